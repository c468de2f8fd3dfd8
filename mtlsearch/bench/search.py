"""``mtlsearch bench search``: what the search platform costs per trial.

Runs the same N short trainings (seeds 0..N-1 of one tiny config) twice:

1. bare: the training loop in this process, one after the other (Ray Train's local
   mode, ``TorchTrainer`` with 0 workers: ``train_loop_per_worker`` runs here with
   no Ray cluster, no actors, no Tune; one torch thread, like a 1-CPU Ray worker);
2. platform: ``mtlsearch search`` on a generated space (``seeds: [0..N-1]``), one
   trial at a time, each a Tune function trial that launches a one-worker
   ``TorchTrainer``.

and prints per-trial wall times, the per-trial overhead of the platform and the
ratio. The SynthRooms generation and ``ray.init`` are timed separately, not per trial.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.errors import UserError


def tiny_config(iterations: int, cache_dir: str) -> dict[str, Any]:
    """A two-task config small enough that start-up dominates a trial."""
    return {
        "tasks": {"semseg": 1.0, "depth": 1.0},
        "data": {
            "synth": {"scenes": 4, "views": 2, "size": [32, 40], "cache_dir": cache_dir},
            "crop_size": [32, 40],
            "num_workers": 0,
            "max_val_images": 4,
        },
        "model": {"backbone": "resnet18", "decoder_width": 16},
        "train": {"iterations": iterations, "eval_every": iterations, "batch_size": 2,
                  "log_every": max(1, iterations)},
        "eval": {"edge_thresholds": 5},
    }


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch bench search [--trials N] [--iterations I]``."""
    if args.trials < 1 or args.iterations < 1:
        raise UserError(f"--trials and --iterations must be >= 1, got {args.trials}, {args.iterations}")
    from mtlsearch.config import load_config
    from mtlsearch.data.pipeline import resolve_root
    from mtlsearch.trainable import make_trainer

    work = Path(tempfile.mkdtemp(prefix="mtlsearch-bench-"))
    base = tiny_config(args.iterations, str(work / "cache"))
    t0 = time.time()
    root = resolve_root(load_config(base))
    print(f"dataset: {root} ({time.time() - t0:.1f} s)", flush=True)

    # Ray Train workers run with OMP_NUM_THREADS = CPUs per worker (1); match it here.
    import torch

    torch.set_num_threads(1)
    bare = []
    for seed in range(args.trials):
        cfg = load_config(base, {"train.seed": seed})
        start = time.time()
        make_trainer(cfg, workers=0, storage_path=work / "bare", name=f"seed{seed}",
                     data_root=root).fit()
        bare.append(time.time() - start)
        print(f"bare trial {seed}: {bare[-1]:.1f} s", flush=True)

    import ray

    from mtlsearch.search import run_search
    from mtlsearch.space import load_space

    space_path = work / "bench.yaml"
    space_path.write_text(yaml.safe_dump({
        "name": "bench",
        "base": base,
        "seeds": list(range(args.trials)),
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "resources": {"workers": 1, "cpus_per_worker": 1},
        "max_concurrent_trials": 1,
    }))
    start = time.time()
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    init_s = time.time() - start
    start = time.time()
    code = run_search(load_space(space_path), work / "trials", "bench")
    search_s = time.time() - start
    if code != 0:
        print("error: the benchmark search failed")
        return code
    per_trial = []
    for result in sorted((work / "trials" / "bench").glob("*/result.json")):
        lines = result.read_text().splitlines()
        per_trial.append(json.loads(lines[-1]).get("time_total_s", float("nan")))

    n = args.trials
    bare_mean = sum(bare) / n
    platform_mean = search_s / n
    print()
    print(f"trials: {n} x {args.iterations} iterations (tiny config), one at a time")
    print(f"bare loop per trial:           {', '.join(f'{t:.1f}' for t in bare)} s (mean {bare_mean:.1f} s)")
    print(f"search, Tune trial time:       {', '.join(f'{t:.1f}' for t in per_trial)} s")
    print(f"search wall per trial:         {platform_mean:.1f} s (total {search_s:.1f} s, "
          f"ray.init {init_s:.1f} s not included)")
    print(f"platform overhead per trial:   {platform_mean - bare_mean:.1f} s")
    print(f"ratio search / bare:           {platform_mean / bare_mean:.2f}")
    print(f"(scratch folder: {work})")
    return 0


__all__ = ["run_cli", "tiny_config"]
