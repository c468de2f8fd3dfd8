"""Can a config's model be built? A cheap check for every planned trial of a search.

:func:`check_buildable` constructs the model on PyTorch's ``meta`` device (shapes and
parameters, no memory, no weights loaded) and runs one training-mode forward pass at
``data.crop_size`` there (shapes only, about a second), so a trial whose keys cannot be combined
(e.g. a cross-view module with neither output, a decoder that needs another backbone,
cross-view renders with orthographic rays) fails in ``mtlsearch search --dry-run``
instead of after training has begun.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from mtlsearch.config import Config
from mtlsearch.errors import UserError


def check_buildable(cfg: Config, trial: Mapping[str, Any] | None = None, *, forward: bool = True) -> None:
    """Build ``cfg``'s model on the ``meta`` device and (``forward``) run one training
    forward pass there; raise :class:`UserError` naming the trial if either fails.

    ``trial``: the trial's varied keys and values (dotted), named in the message; default
    ``cfg.name``. ``model.pretrained_path`` and ``model.weights`` are not loaded (their existence is
    checked by the config). Class counts are the layout's defaults (a dataset's own count only changes
    the size of the classification layers). An operator without a meta kernel skips the
    forward pass (construction was still checked).
    """
    from mtlsearch.models.mtl import build_model

    probe = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained_path": "", "weights": ""})})
    try:
        with torch.device("meta"):
            model = build_model(probe).train()
            if forward:
                with contextlib.suppress(NotImplementedError):
                    model(**_probe_inputs(probe))
    except Exception as err:  # noqa: BLE001  (any construction error is the trial's)
        where = (
            ", ".join(f"{k}={v!r}" for k, v in trial.items()) if trial else f"config {cfg.name!r}"
        )
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"trial {where}: the model cannot be built: {reason}") from err


def _probe_inputs(cfg: Config, batch: int = 2) -> dict[str, Any]:
    """Meta tensors shaped like a training batch of ``cfg`` (one view and its sources)."""
    h, w = cfg.data.crop_size
    K = torch.eye(3).expand(batch, 3, 3)
    inputs: dict[str, Any] = {"image": torch.empty(batch, 3, h, w), "K": K}
    if cfg.cvm.enabled:
        n = cfg.cvm.num_views - 1
        inputs["src_images"] = torch.empty(batch, n, 3, h, w)
        inputs["src_K"] = K.unsqueeze(1).expand(batch, n, 3, 3)
        inputs["rel_pose"] = torch.eye(4).expand(batch, n, 4, 4)
    if cfg.regularizer.enabled and cfg.regularizer.cross_view.enabled:
        inputs["render_poses"] = torch.eye(4).expand(batch, 4, 4)
        inputs["render_K"] = K
    return inputs


__all__ = ["check_buildable"]
