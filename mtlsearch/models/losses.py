"""The training objective (3DMTL Eq. 2 and 3) over a model's output dict."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtlsearch.config import Config
from mtlsearch.tasks import task_loss

ALPHA_TERMS = ("loss_render_", "loss_aux_", "loss_xview_")
"""Terms weighted by alpha_t; ``regularizer.render_task_weights: false`` drops their w_t."""


def compute_losses(
    out: dict[str, dict[str, torch.Tensor]],
    batch_labels: dict[str, torch.Tensor],
    cfg: Config,
    alpha: float | Mapping[str, float],
    xview_labels: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted multi-task loss and its unweighted parts.

    total = sum_t w_t L_t(head_t, y_t)
          + alpha  * sum_{t rendered} w_t L_t(render_t, y_t)     (labels resized per
                                                                  ``regularizer.label_mode``)
          + alpha  * sum_t w_t L_t(aux_t, y_t)                   (Table-4 aux heads)
          + alpha' * sum_{t rendered} w_t L_t(render_xview_t, y'_t), alpha' =
            ``regularizer.cross_view.weight_scale * alpha`` (needs ``xview_labels`` = y')
          + sum_t w_t sum_s L_t(inter_{t,s}, y_t)                (deep supervision of
            invpt/mtinet, each scale s like the final prediction, as both papers weigh it;
            predictions upsampled to the label; off with ``train.intermediate_supervision``).

    ``alpha`` is one number or alpha_t per task (``regularizer.alpha.per_task``); with
    ``regularizer.render_task_weights: false`` the alpha-weighted terms (render, aux,
    cross-view) drop w_t. The edge BCE's positive weight is ``loss.edge_pos_weight``.

    ``parts`` holds detached unweighted losses keyed ``loss_<task>``, ``loss_render_<task>``,
    ``loss_aux_<task>``, ``loss_xview_<task>``, ``loss_inter_<task>`` (summed over scales).
    Tasks without a label in ``batch_labels`` are skipped (their absence is the caller's
    choice).
    """
    weights = cfg.tasks
    mode = cfg.regularizer.label_mode
    x_scale = cfg.regularizer.cross_view.weight_scale

    def alpha_of(task: str) -> float:
        return float(alpha[task]) if isinstance(alpha, Mapping) else float(alpha)

    terms: list[tuple[str, float, str, torch.Tensor, torch.Tensor]] = []
    inter = out.get("inter", {}) if cfg.train.intermediate_supervision else {}
    for task, pred in out["heads"].items():
        if task in batch_labels:
            terms.append((f"loss_{task}", 1.0, task, pred, batch_labels[task]))
    for task, pred in out.get("renders", {}).items():
        if task in batch_labels:
            terms.append((f"loss_render_{task}", alpha_of(task), task, pred, batch_labels[task]))
    for task, pred in out.get("aux", {}).items():
        if task in batch_labels:
            terms.append((f"loss_aux_{task}", alpha_of(task), task, pred, batch_labels[task]))
    if xview_labels is not None:
        for task, pred in out.get("renders_xview", {}).items():
            if task in xview_labels:
                terms.append((f"loss_xview_{task}", x_scale * alpha_of(task), task, pred, xview_labels[task]))
    for name, pred in inter.items():
        task = name.split("@")[0]
        if task in batch_labels:
            terms.append((f"loss_inter_{task}", 1.0, task, pred, batch_labels[task]))
    if not terms:
        raise ValueError("compute_losses: no output has a matching label")
    total = terms[0][3].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for key, scale, task, pred, label in terms:
        term_mode = "upsample" if key.startswith("loss_inter_") else mode
        value = loss_of(task, pred, label, term_mode, cfg)
        parts[key] = parts[key] + value.detach() if key in parts else value.detach()
        w_t = weights[task]
        if not cfg.regularizer.render_task_weights and key.startswith(ALPHA_TERMS):
            w_t = 1.0
        if scale != 0.0:
            total = total + scale * w_t * value
    return total, parts


def loss_of(task: str, pred: torch.Tensor, label: torch.Tensor, label_mode: str, cfg: Config) -> torch.Tensor:
    """One task's loss (:func:`mtlsearch.tasks.task_loss`) with the run's loss settings
    (e.g. the edge BCE's positive weight ``loss.edge_pos_weight``: 0.95 InvPT, 0.8 ATRC on
    NYUD)."""
    return task_loss(task, pred, label, label_mode=label_mode, cfg=cfg)


def source_view_losses(
    out: dict[str, dict[str, torch.Tensor]], labels: dict[str, torch.Tensor], start: int, cfg: Config
) -> dict[str, torch.Tensor]:
    """Detached head losses ``loss_src_<task>`` on batch rows ``start:``: with
    ``data.supervise_all_views`` those are the turns where a source view (e.g. an extra
    video frame) is the reference, so this is what those views teach the heads. Every
    head task has a key (0 when no such row has that label), so DDP workers agree."""
    parts = {}
    for task, pred in out["heads"].items():
        if task in labels:
            value = loss_of(task, pred[start:], labels[task][start:], cfg.regularizer.label_mode, cfg)
            parts[f"loss_src_{task}"] = value.detach()
    return parts
