"""Mixed precision of the training step (``train.precision``, ``channels_last``, ``compile``).

Contract:

* ``fp32``: nothing changes. ``bf16`` / ``fp16``: the model's forward runs under
  ``torch.autocast`` with that dtype (convolutions, linear layers and attention in the low
  precision, per autocast's op lists); the weights, the optimizer's state and the
  gradients stay float32. ``fp16`` also scales the loss with a ``torch.amp.GradScaler``
  (skipped steps on overflow, the scale adapted), on GPU and on CPU, where torch
  supports it (:func:`fp16_problem`); elsewhere ``fp16`` is refused with a
  :class:`UserError` naming ``train.precision``. On CPU, torch has no fast float16
  convolution backward (a slow fallback: a 3x3 convolution's backward ~1000x fp32's,
  measured with torch 2.14 on AVX512), so a model with convolutions gets a warning line
  (:func:`slow_fp16_note`): bf16 is the low precision to use on CPU.
* Float32 is kept where precision matters: every model output is cast back to float32
  (:func:`float32`) and the losses are computed outside autocast; evaluation (metrics)
  runs the float32 model without autocast; the 3D-aware regularizer keeps ray geometry,
  tri-plane sampling, densities and volume-rendering compositing in float32 (only its
  tri-plane encoder and field MLPs follow autocast, :func:`autocast_dtype`).
* :func:`optimizer_step` is the backward pass and the update, with or without a scaler
  (gradient clipping sees unscaled gradients).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable
from typing import Any

import torch

from mtlsearch.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@functools.cache
def _cpu_fp16_problem() -> str | None:
    try:
        torch.amp.GradScaler("cpu")
        conv = torch.nn.Conv2d(3, 4, 3)
        with torch.autocast("cpu", dtype=torch.float16):
            out = conv(torch.randn(1, 3, 8, 8))
        if out.dtype != torch.float16:
            return f"autocast on CPU gave {out.dtype} for a float16 convolution"
        out.float().sum().backward()
    except (RuntimeError, ValueError, TypeError, AssertionError) as err:
        return str(err).strip().splitlines()[0][:200]
    return None


def fp16_problem(device: torch.device | str) -> str | None:
    """Why ``fp16`` cannot train on ``device`` with this torch (None: it can). CPU needs
    float16 autocast and a CPU GradScaler (torch >= 2.4); probed once per process."""
    device = torch.device(device)
    if device.type == "cpu":
        return _cpu_fp16_problem()
    return None


def check_precision(precision: str, device: torch.device | str) -> None:
    """Raise :class:`UserError` naming ``train.precision`` if ``device`` cannot train in it."""
    if precision not in PRECISIONS:
        raise UserError(f"train.precision: unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if precision == "fp16":
        problem = fp16_problem(device)
        if problem:
            raise UserError(
                f"train.precision: fp16 is not supported on {torch.device(device).type} by torch "
                f"{torch.__version__} ({problem}); use bf16 or fp32"
            )


def slow_fp16_note(precision: str, device: torch.device | str, model: torch.nn.Module) -> str | None:
    """A warning line when ``fp16`` will train ``model``'s convolutions on CPU (torch's
    float16 convolution backward on CPU is a slow fallback); None otherwise."""
    if precision != "fp16" or torch.device(device).type != "cpu":
        return None
    if not any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules()):
        return None
    return (
        "warning: train.precision: fp16 on CPU runs convolution backward passes in a slow "
        "fallback (about 1000x fp32 per convolution, see mtlsearch bench model); use bf16 on CPU"
    )


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The forward pass's context: ``torch.autocast`` in ``precision`` (a no-op for fp32)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The dtype autocast is running in on ``device``'s type right now (None: off, or a
    device autocast does not know, such as ``meta`` where models are checked)."""
    kind = torch.device(device).type
    try:
        enabled = torch.is_autocast_enabled(kind)
    except RuntimeError:  # "unknown device type for autocast"
        return None
    if not enabled:
        return None
    return torch.get_autocast_dtype(kind)


def float32(tree: Any) -> Any:
    """Every floating tensor in nested dicts/lists/tuples cast to float32 (losses and
    metrics are computed on these)."""
    if isinstance(tree, torch.Tensor):
        return tree.float() if tree.is_floating_point() else tree
    if isinstance(tree, dict):
        return {k: float32(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(float32(v) for v in tree)
    return tree


def make_scaler(precision: str, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A GradScaler for ``fp16`` on ``device``'s type; None for fp32 and bf16 (bf16 has
    float32's exponent range, so its gradients need no scaling)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    params: Iterable[torch.nn.Parameter],
    grad_clip: float = 0.0,
) -> bool:
    """Backward and update (zeroing gradients first); returns whether the optimizer
    stepped (a scaler skips steps whose gradients overflowed). With ``grad_clip`` > 0 the
    gradient norm is clipped after unscaling."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return True
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with its 4-D weights in channels-last (NHWC) memory format, in place."""
    return model.to(memory_format=torch.channels_last)


__all__ = [
    "DTYPES",
    "PRECISIONS",
    "autocast",
    "autocast_dtype",
    "check_precision",
    "float32",
    "fp16_problem",
    "make_scaler",
    "optimizer_step",
    "slow_fp16_note",
    "to_channels_last",
]
