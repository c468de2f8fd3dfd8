"""``mtlsearch bench search``: what the search platform costs per trial.

Runs the same N short trainings (seeds 0..N-1 of one tiny config) twice:

1. bare: the training loop in this process, one after the other (Ray Train's local
   mode, ``TorchTrainer`` with 0 workers: no Ray cluster, no actors, no Tune; one
   torch thread, like a 1-CPU Ray worker);
2. platform: ``mtlsearch search`` on a generated space (``seeds: [0..N-1]``), one
   trial at a time: each Tune trial runs the loop in its own process, with
   ``--workers N`` as rank 0 of a DDP group with N-1 peer actors (:mod:`mtlsearch.execution.peers`).

and prints per-trial wall times, the per-trial overhead of the platform, the ratio,
the peak resident memory of Ray's processes while a trial runs (sampled every
0.2 s; the driver excluded), and the disk a trial's checkpoints take before and after a
checkpoint policy (:mod:`mtlsearch.prune`: what a trial of the best configurations keeps,
its last whole checkpoint, and what any other finished trial keeps, its weights in
float16). ``--profile-phases`` adds where each trial's time goes,
from the timestamps of :mod:`mtlsearch.execution.phases`. SynthRooms generation and
``ray.init`` are timed separately, not per trial.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.bench.scratch import scratch_folder
from mtlsearch.errors import UserError

PHASES = (
    ("scheduling", "previous trial end (or search start) -> trial_start"),
    ("train start", "trial_start -> loop_start (peers start, import and join; 0 for 1 worker)"),
    ("data + model", "loop_start -> model_ready"),
    ("first step", "model_ready -> first_step"),
    ("training", "first_step -> loop_end (steps, evaluations, checkpoints)"),
    ("teardown", "loop_end -> trial_end"),
)


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


class RaySampler:
    """Peak summed RSS of the local Ray instance's processes (driver excluded), sampled."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.idle = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        """RSS of every process the local Ray instance runs: this driver started it, so
        they are its descendants (GCS, raylet, dashboard, trial and worker processes)."""
        import psutil

        total = 0
        for proc in psutil.Process().children(recursive=True):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> RaySampler:
        self.idle = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def phase_table(events: list[dict], search_start: float) -> dict[str, list[float]]:
    """Seconds per phase per trial from :mod:`mtlsearch.execution.phases` events."""
    by_trial: dict[str, dict[str, float]] = {}
    order: list[str] = []
    current = None
    for event in events:
        if event["event"] == "trial_start":
            current = event["trial"]
            order.append(current)
        trial = event["trial"] or current
        if trial is not None:
            by_trial.setdefault(trial, {}).setdefault(event["event"], event["t"])
    out: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    previous_end = search_start
    for trial in order:
        t = by_trial[trial]
        marks = [previous_end, t.get("trial_start"), t.get("loop_start"), t.get("model_ready"),
                 t.get("first_step"), t.get("loop_end"), t.get("trial_end")]
        for (name, _), a, b in zip(PHASES, marks, marks[1:]):
            if a is not None and b is not None:
                out[name].append(b - a)
        previous_end = t.get("trial_end", previous_end)
    return out


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch bench search [--trials N] [--iterations I] [--workers W] [--profile-phases]
    [--keep]``; the scratch folder is removed at the end unless ``--keep``."""
    if args.trials < 1 or args.iterations < 1 or args.workers < 1:
        raise UserError(
            f"--trials, --iterations and --workers must be >= 1, got {args.trials}, "
            f"{args.iterations}, {args.workers}"
        )
    with scratch_folder("mtlsearch-bench-", args.keep) as work:
        return _run(args, work)


def _run(args: argparse.Namespace, work: Path) -> int:
    from mtlsearch.config import load_config
    from mtlsearch.data.pipeline import resolve_root
    from mtlsearch.execution.trainer import make_trainer

    base = tiny_config(args.iterations, str(work / "cache"))
    t0 = time.time()
    root = resolve_root(load_config(base))
    print(f"dataset: {root} ({time.time() - t0:.1f} s)", flush=True)

    # Ray workers run with OMP_NUM_THREADS = CPUs per worker (1); match it here.
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

    from mtlsearch.execution.cluster import connect
    from mtlsearch.execution.phases import ENV, read
    from mtlsearch.execution.search import run_search
    from mtlsearch.space import load_space

    space_path = work / "bench.yaml"
    space_path.write_text(yaml.safe_dump({
        "name": "bench",
        "base": base,
        "seeds": list(range(args.trials)),
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "resources": {"workers": args.workers, "cpus_per_worker": 1},
        "max_concurrent_trials": 1,
    }))
    events_path = work / "phases.jsonl"
    os.environ[ENV] = str(events_path)
    start = time.time()
    connect(num_cpus=max(os.cpu_count() or 1, args.workers) + 1)
    init_s = time.time() - start
    with RaySampler() as memory:
        start = time.time()
        code = run_search(load_space(space_path), work / "trials", "bench")
        search_s = time.time() - start
    os.environ.pop(ENV, None)
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
    kind = "in the trial's process" if args.workers == 1 else f"{args.workers}-process DDP group per trial"
    print()
    print(f"trials: {n} x {args.iterations} iterations (tiny config), one at a time, {kind}")
    print(f"bare loop per trial:           {', '.join(f'{t:.1f}' for t in bare)} s (mean {bare_mean:.1f} s)")
    print(f"search, Tune trial time:       {', '.join(f'{t:.1f}' for t in per_trial)} s")
    print(f"search wall per trial:         {platform_mean:.1f} s (total {search_s:.1f} s, "
          f"ray.init {init_s:.1f} s not included)")
    print(f"platform overhead per trial:   {platform_mean - bare_mean:.1f} s")
    print(f"ratio search / bare:           {platform_mean / bare_mean:.2f}")
    print(f"Ray processes' memory (RSS):   {memory.idle / 2**20:.0f} MiB idle, "
          f"{memory.peak / 2**20:.0f} MiB peak with one trial running "
          f"(+{(memory.peak - memory.idle) / 2**20:.0f} MiB per running trial)")
    for line in disk_lines(work / "trials" / "bench"):
        print(line)
    if args.profile_phases:
        table = phase_table(read(str(events_path)), search_start=start)
        print()
        print("where a trial's time goes (mean over trials, seconds):")
        for name, meaning in PHASES:
            values = table[name]
            mean = f"{statistics.mean(values):6.2f}" if values else "     -"
            print(f"  {name:<13} {mean}   {meaning}")
    return 0


def disk_lines(search_dir: Path) -> list[str]:
    """Checkpoint disk per trial of the finished search in ``search_dir``: as Tune left
    it, what a best configuration's trial keeps, and (applied here) what any other
    finished trial keeps under ``others: half``."""
    from mtlsearch.prune import prune, size_text
    from mtlsearch.space.spec import CheckpointPolicy

    before = prune(search_dir, CheckpointPolicy(keep=0, others="half"), dry_run=True).trials
    best = [t.files[-1].stat().st_size if t.files else 0 for t in before]
    after = prune(search_dir, CheckpointPolicy(keep=0, others="half")).trials
    files = sum(len(t.files) for t in before) / max(1, len(before))

    def each(sizes: list[int]) -> str:
        return f"{', '.join(size_text(n) for n in sizes)} (mean {size_text(statistics.mean(sizes or [0]))})"

    return [
        f"checkpoints per trial (disk):  {each([t.before for t in before])} as Tune leaves them "
        f"({files:g} whole checkpoint(s) each)",
        f"  after the policy, best:      {each(best)} (the last checkpoint whole)",
        f"  after the policy, others:    {each([t.after for t in after])} (the last weights in float16)",
    ]


__all__ = ["disk_lines", "run_cli", "tiny_config"]
