"""The training objective (3DMTL Eq. 2 and 3) over a model's output dict."""

from __future__ import annotations

import torch

from mtlsearch.config import Config
from mtlsearch.tasks import task_loss


def compute_losses(
    out: dict[str, dict[str, torch.Tensor]],
    batch_labels: dict[str, torch.Tensor],
    cfg: Config,
    alpha: float,
    xview_labels: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted multi-task loss and its unweighted parts.

    total = sum_t w_t L_t(head_t, y_t)
          + alpha  * sum_{t rendered} w_t L_t(render_t, y_t)     (labels resized per
                                                                  ``regularizer.label_mode``)
          + alpha  * sum_t w_t L_t(aux_t, y_t)                   (Table-4 aux heads)
          + alpha' * sum_{t rendered} w_t L_t(render_xview_t, y'_t), alpha' =
            ``regularizer.cross_view.weight_scale * alpha`` (needs ``xview_labels`` = y').

    ``parts`` holds detached unweighted losses keyed ``loss_<task>``, ``loss_render_<task>``,
    ``loss_aux_<task>``, ``loss_xview_<task>``. Tasks without a label in ``batch_labels``
    are skipped (their absence is the caller's choice).
    """
    weights = cfg.tasks
    mode = cfg.regularizer.label_mode
    alpha_x = cfg.regularizer.cross_view.weight_scale * alpha
    terms: list[tuple[str, float, str, torch.Tensor, torch.Tensor]] = []
    for task, pred in out["heads"].items():
        if task in batch_labels:
            terms.append((f"loss_{task}", 1.0, task, pred, batch_labels[task]))
    for task, pred in out.get("renders", {}).items():
        if task in batch_labels:
            terms.append((f"loss_render_{task}", alpha, task, pred, batch_labels[task]))
    for task, pred in out.get("aux", {}).items():
        if task in batch_labels:
            terms.append((f"loss_aux_{task}", alpha, task, pred, batch_labels[task]))
    if xview_labels is not None:
        for task, pred in out.get("renders_xview", {}).items():
            if task in xview_labels:
                terms.append((f"loss_xview_{task}", alpha_x, task, pred, xview_labels[task]))
    if not terms:
        raise ValueError("compute_losses: no output has a matching label")
    total = terms[0][3].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for key, scale, task, pred, label in terms:
        value = task_loss(task, pred, label, label_mode=mode)
        parts[key] = value.detach()
        if scale != 0.0:
            total = total + scale * weights[task] * value
    return total, parts
