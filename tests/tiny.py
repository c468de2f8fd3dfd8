"""Shared helpers of the Ray end-to-end tests: the tiny config, space files, the CLI.

The tiny config trains two tasks on 4 SynthRooms scenes at 32x40 in seconds, so the
tests measure the platform (Tune, Train, storage, schedulers), not the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY_BACKBONE = "resnet10t"
"""The tiny config's backbone: resnet18's channels at 4.9 M weights, so each of the many
checkpoints the Ray tests write is 60 MB rather than 134 MB (the suite's disk matters)."""


def tiny_base(cache: Path | str | None = None, eval_every: int = 2, iterations: int = 4) -> dict[str, Any]:
    """A two-task config that trains ``iterations`` steps, evaluating every ``eval_every``
    (SynthRooms generated into ``cache``; None: the default cache, for spaces only loaded)."""
    synth: dict[str, Any] = {"scenes": 4, "views": 2, "size": [32, 40]}
    if cache is not None:
        synth["cache_dir"] = str(cache)
    return {
        "tasks": {"semseg": 1.0, "depth": 1.0},
        "data": {
            "synth": synth,
            "crop_size": [32, 40],
            "num_workers": 0,
            "max_val_images": 4,
        },
        "model": {"backbone": TINY_BACKBONE, "decoder_width": 16},
        "train": {"iterations": iterations, "eval_every": eval_every, "batch_size": 2,
                  "log_every": 2},
        "eval": {"edge_thresholds": 5},
    }


def write_space(folder: Path, body: dict[str, Any]) -> Path:
    """Write a search space named ``body["name"]`` into ``folder``; return its path."""
    path = folder / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def search(*argv: str) -> int:
    """``mtlsearch search ARGV`` in this process; its exit status."""
    from mtlsearch.cli import build_parser
    from mtlsearch.execution.search import run_cli

    return run_cli(build_parser().parse_args(["search", *argv]))
