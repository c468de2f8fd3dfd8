"""Full-model weights: ``model.weights`` and ``mtlsearch weights convert``.

Contract:

* :func:`convert_checkpoint` reads an official InvPT or MTI-Net checkpoint (a state_dict,
  or a dict holding it under ``model`` / ``state_dict``, keys possibly prefixed
  ``module.``) and maps it with :mod:`mtlsearch.models.official` to our full-model
  state_dict; ``mtlsearch weights convert`` writes it as ``.safetensors`` (marked as ours,
  so only a file this command wrote is ever replaced).
* :func:`load_full_weights` loads such a state_dict into a built model strictly: every
  tensor of the inference model (backbone, cross-view module, decoder, heads) must be
  there with its shape, and nothing else; the training-only parts (the regularizer, the
  auxiliary heads) keep their initialisation when the file has none (an official
  checkpoint never has them). Problems are one :class:`UserError` naming the first keys
  and the count, before anything is loaded.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import torch
from torch import nn

from mtlsearch.errors import UserError
from mtlsearch.models.backbones import read_state_dict
from mtlsearch.models.official import Conversion

SOURCES = ("invpt", "mtinet")
"""Official code bases ``--from`` accepts: modules of :mod:`mtlsearch.models.official`."""
TRAINING_ONLY = ("regularizer.", "aux_heads.")
"""Parts of our state_dict that a full-model file may leave out (initialised fresh)."""
WRITER = "mtlsearch weights convert"
"""Metadata ``writer`` of the files :func:`run_convert` writes."""
_SHOWN = 3


def _listing(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


OFFICIAL_TASK_NAMES = {"human_parts": "parts"}
"""Official task names that differ from ours."""


def official_task_order(official: dict[str, torch.Tensor]) -> list[str]:
    """The tasks in the order of the official checkpoint's ``heads.<task>.`` keys (a torch
    checkpoint keeps the model's order; a safetensors file sorts its keys)."""
    order: list[str] = []
    for key in official:
        match = re.match(r"(?:module\.)?heads\.([^.]+)\.", key)
        task = OFFICIAL_TASK_NAMES.get(match.group(1), match.group(1)) if match else None
        if task and task not in order:
            order.append(task)
    return order


def convert_checkpoint(src: str | Path, source: str, tasks: list[str] | None = None) -> Conversion:
    """Our state_dict from the official ``source`` checkpoint at ``src``. ``tasks``: the
    official task order where the file's key order may not tell it (InvPT indexes its
    per-task layers by position); default the order of the checkpoint's keys."""
    if source not in SOURCES:
        raise UserError(f"--from: expected one of {', '.join(SOURCES)}, got {source!r}")
    official = read_state_dict(src, key="SRC")
    if any(k.startswith("module.") for k in official):
        official = {k.removeprefix("module."): v for k, v in official.items()}
    module = importlib.import_module(f"mtlsearch.models.official.{source}")
    return module.convert(official, tasks) if source == "invpt" else module.convert(official)


def _ours(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("writer") == WRITER
    except Exception:  # noqa: BLE001 - not a safetensors file: not ours
        return False


def run_convert(args: argparse.Namespace) -> int:
    """``mtlsearch weights convert SRC --from invpt|mtinet --out DST.safetensors``."""
    from safetensors.torch import save_file

    from mtlsearch.outputs import check_file

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: expected a .safetensors file name")
    target = check_file(out, expected="a .safetensors file name", ours=_ours, writer=WRITER)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    conversion = convert_checkpoint(args.src, args.source, tasks)
    metadata = {"writer": WRITER, "source": args.source}
    order = tasks or ([] if Path(args.src).suffix == ".safetensors"
                      else official_task_order(read_state_dict(args.src, key="SRC")))
    if order:
        metadata["tasks"] = ",".join(order)
    tmp = target.with_name(f".{target.name}.tmp")
    state = {k: v.contiguous() for k, v in conversion.state_dict.items()}
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(target)
    n = sum(v.numel() for v in state.values() if v.is_floating_point())
    print(f"wrote {target}: {len(state)} tensors ({n:,} parameters and statistics) from "
          f"the official {args.source} checkpoint {args.src}")
    if conversion.dropped:
        print(f"dropped {len(conversion.dropped)} official tensor(s) that the official forward "
              f"never reads: {_listing(conversion.dropped)}")
    where = f"in the official order ({', '.join(order)})" if order else "in the official order"
    print(f"load it with: --set model.weights={target}, the config's tasks {where}: the order fixes "
          "the channel layout of MTI-Net's propagation and of InvPT's task tokens")
    return 0


def _recorded_task_order(path: Path) -> list[str]:
    """The official task order :func:`run_convert` recorded in ``path`` (empty if none)."""
    if path.suffix != ".safetensors":
        return []
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get("tasks", "")
    except Exception:  # noqa: BLE001 - read_state_dict reports an unreadable file
        return []
    return [t for t in text.split(",") if t]


def load_full_weights(model: nn.Module, path: str | Path, tasks: list[str] | None = None) -> None:
    """Load the full-model state_dict at ``path`` into ``model`` (see the contract).
    ``tasks``: the model's task order, checked against the official order a converted
    file records (the same weights in another order compute another function)."""
    state = read_state_dict(path, key="model.weights")
    recorded = _recorded_task_order(Path(path))
    if recorded and tasks is not None:
        ours = [t for t in tasks if t in recorded]
        if ours != recorded:
            raise UserError(
                f"model.weights: {path} holds an official model whose tasks are in the order "
                f"{', '.join(recorded)}; list the config's tasks in that order (got {', '.join(tasks)}): "
                "the order fixes how the tasks' channels and tokens are laid out")
    expected = model.state_dict()
    unknown = [k for k in state if k not in expected]
    missing = [k for k in expected if k not in state and not k.startswith(TRAINING_ONLY)]
    shapes = [f"{k} {tuple(state[k].shape)} vs ours {tuple(expected[k].shape)}"
              for k in state if k in expected and state[k].shape != expected[k].shape]
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown key(s): {_listing(unknown)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped tensor(s): {_listing(shapes)}")
    if problems:
        raise UserError(f"model.weights: {path} does not fit this model: " + "; ".join(problems))
    with torch.no_grad():
        model.load_state_dict(state, strict=False)


__all__ = ["SOURCES", "WRITER", "convert_checkpoint", "load_full_weights", "run_convert"]
