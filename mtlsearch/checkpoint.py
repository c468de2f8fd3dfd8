"""Training checkpoints: one ``checkpoint.pt`` file per Ray Train checkpoint directory.

The file holds everything a restarted run needs to continue where it stopped::

    {"model": state_dict (unwrapped from DDP), "optimizer": ..., "scheduler": ...,
     "step": completed iterations, "rng": {"torch", "cuda", "numpy", "python"},
     "config": Config.to_dict(), "num_classes": {task: classes},
     "scaler": GradScaler.state_dict() (train.precision fp16 only)}

A checkpoint without ``scaler`` (fp32/bf16 runs, or files written before it existed)
resumes an fp16 run with a fresh GradScaler; a saved ``scaler`` is ignored when the
resumed run needs none (weights and optimizer state are float32 in every precision).

Every entry is made of tensors, numbers, strings, lists and dicts, so the file loads
with ``torch.load(weights_only=True)`` (no arbitrary pickles): the NumPy and Python RNG
states, which are tuples of arrays and ints, are converted on save and rebuilt on load.

A finished trial's checkpoint may have been reduced to its weights (``mtlsearch prune``,
:mod:`mtlsearch.prune`: no optimizer, scheduler or RNG state, weights possibly float16):
:func:`load_trained_model` loads it like any other; :func:`restore` refuses to resume from it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlsearch.errors import UserError
from mtlsearch.layout import CHECKPOINT_FILE


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel (or any ``.module``) wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), NumPy and Python RNG states in a weights_only-safe form."""
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np.random.set_state(
        ("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    config: dict[str, Any],
    num_classes: dict[str, int] | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write ``directory/checkpoint.pt`` and return its path (``num_classes``: the
    dataset's class counts, needed to rebuild the model's heads; ``scaler``: an fp16
    run's GradScaler)."""
    path = Path(directory) / CHECKPOINT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"scaler": scaler.state_dict()} if scaler is not None else {}
    torch.save(
        {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": int(step),
            "rng": rng_state(),
            "config": config,
            "num_classes": dict(num_classes or {}),
            **extra,
        },
        path,
    )
    return path


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_state(state: Any, path: str | Path, keys: tuple[str, ...] = ("model", "config")) -> dict[str, Any]:
    """``state`` if it is a checkpoint dict with ``keys`` of the right types (``model``: a
    state dict of tensors, ``config``: a mapping, ``step``: an int, ``num_classes``: task
    -> positive int), else a :class:`UserError` naming ``path`` and the entry."""
    if not isinstance(state, dict):
        raise UserError(f"{path}: not an mtlsearch checkpoint (a {_type_name(state)}, not a dict)")
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserError(f"{path}: not an mtlsearch checkpoint (no {', '.join(missing)!s} entry)")
    model = state.get("model")
    if "model" in state and (not isinstance(model, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())):
        raise UserError(f"{path}: checkpoint entry 'model' is not a state dict of tensors")
    if "config" in state and not isinstance(state["config"], dict):
        raise UserError(f"{path}: checkpoint entry 'config' must be a mapping, got "
                        f"{_type_name(state['config'])}")
    step = state.get("step")
    if "step" in state and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise UserError(f"{path}: checkpoint entry 'step' must be a non-negative int, got {step!r}")
    classes = state.get("num_classes")
    if classes is not None and (not isinstance(classes, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 65536
            for k, v in classes.items())):
        raise UserError(f"{path}: checkpoint entry 'num_classes' must map tasks to class counts")
    for key in ("optimizer", "scheduler", "rng"):
        if key in keys and not isinstance(state.get(key), dict):
            raise UserError(f"{path}: checkpoint entry {key!r} must be a mapping")
    if "scaler" in state and not isinstance(state["scaler"], dict):
        raise UserError(f"{path}: checkpoint entry 'scaler' must be a mapping")
    return state


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file, or ``checkpoint.pt`` inside a checkpoint directory, with
    ``torch.load(weights_only=True)``; an unreadable file (garbage, empty, truncated, a
    pickle of anything but tensors and plain containers) is a :class:`UserError` naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a corrupt file
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{path}: not a readable checkpoint ({_type_name(err)}: {reason})") from None
    return check_state(state, path, keys=())


def restore(
    state: dict[str, Any],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    rng: bool = True,
    scaler: torch.amp.GradScaler | None = None,
) -> int:
    """Load a checkpoint's state into the given objects; return the completed step.
    Weights that do not fit ``model`` are a :class:`UserError`. ``scaler`` takes the saved
    GradScaler state when there is one (else it keeps its fresh state)."""
    try:
        unwrap(model).load_state_dict(state["model"])
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0][:300]
        raise UserError(f"checkpoint weights do not fit the model its config describes: {reason}") from None
    if optimizer is not None and "optimizer" not in state:
        raise UserError("checkpoint holds weights only (reduced once its search finished, see "
                        "mtlsearch prune); training cannot resume from it")
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if rng:
        set_rng_state(state["rng"])
    return int(state["step"])


def load_trained_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """Rebuild a trained model from its checkpoint (config included); returns (model, cfg).

    The model is in eval mode; call ``model.export()`` for the inference-only network.
    """
    from mtlsearch.config import load_config
    from mtlsearch.models import build_model

    state = load_checkpoint(path, map_location)
    check_state(state, path, keys=("model", "config"))
    try:
        cfg = load_config(state["config"])
        model = build_model(cfg, state.get("num_classes") or None)
        restore(state, model=model, rng=False)
    except UserError as err:
        raise UserError(f"checkpoint {path}: {err}") from None
    model.eval()
    return model, cfg


__all__ = [
    "CHECKPOINT_FILE",
    "check_state",
    "load_checkpoint",
    "load_trained_model",
    "restore",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "unwrap",
]
