"""``mtlsearch bench gpu``: the papers' base models per precision on one GPU, and two
search trials sharing that GPU.

Without a CUDA GPU it prints one line saying so and exits 0 (nothing to measure).

1. InvPT (ViT-L/16, width 512) and MTI-Net (HRNet-W48) at ``--size`` (default 448x576,
   NYUD's 4 tasks and 40 classes), the training step without and with the 3D-aware
   regularizer (the paper profiles train with it), in each precision of ``--precision``:
   time per step, images/s (batch / time per step) and peak memory
   (``torch.cuda.max_memory_allocated``), each setting in a fresh process
   (:func:`mtlsearch.bench.model.measure`, the loop's own precision code).
2. The same two short trials of a small SynthRooms search (``bench search``'s config at
   96x128, resnet18, 4 tasks, the regularizer on), each reserving
   ``resources.gpus_per_worker: 0.5``: first one at a time, then both at once on the one
   GPU. It prints each run's wall time, the trials' own times, and, sampled from
   ``nvidia-smi`` every 0.5 s, how many trial processes held the GPU at once and their
   peak memory. The scratch folder is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from mtlsearch.bench.model import (
    PAPER_CLASSES,
    PAPER_MODELS,
    measure_all,
    parse_list,
    usable_precisions,
)
from mtlsearch.bench.scratch import scratch_folder
from mtlsearch.errors import UserError
from mtlsearch.precision import PRECISIONS

MODELS = ("invpt", "mtinet")
NO_GPU = "bench gpu: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured"


def model_config(decoder: str, size: tuple[int, int]) -> Any:
    """The published architecture of ``decoder`` at ``size`` (NYUD's 4 tasks)."""
    from mtlsearch.config import load_config

    preset = {"model.decoder": decoder, **PAPER_MODELS[decoder], "data.crop_size": list(size)}
    return load_config(None, preset)


def search_space(cache_dir: str, iterations: int, concurrent: int, cpus: int) -> dict[str, Any]:
    """Two trials (seeds 0, 1) of a small regularized SynthRooms config, each reserving
    half a GPU; ``concurrent`` of them at a time."""
    from mtlsearch.bench.search import tiny_config

    base = tiny_config(iterations, cache_dir)
    base["tasks"] = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}
    base["data"]["synth"]["size"] = [96, 128]
    base["data"]["crop_size"] = [96, 128]
    base["model"]["decoder_width"] = 64
    base["regularizer"] = {"enabled": True}
    base["train"]["batch_size"] = 8
    return {
        "name": f"gpu_share_{concurrent}",
        "base": base,
        "seeds": [0, 1],
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "resources": {"workers": 1, "cpus_per_worker": cpus, "gpus_per_worker": 0.5},
        "max_concurrent_trials": concurrent,
    }


class GpuSampler:
    """Peak number of processes holding the GPU at once, and their peak summed memory
    (MiB), from ``nvidia-smi --query-compute-apps`` every ``interval`` seconds."""

    def __init__(self, exclude_pid: int, interval: float = 0.5) -> None:
        self.exclude = exclude_pid
        self.interval = interval
        self.processes = 0
        self.mib = 0.0
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> list[tuple[int, float]]:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        rows = []
        for line in out.splitlines():
            pid, _, mib = line.partition(",")
            try:
                rows.append((int(pid), float(mib)))
            except ValueError:
                continue
        return [(p, m) for p, m in rows if p != self.exclude]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rows = self.sample()
            except (OSError, subprocess.SubprocessError):
                return
            self.processes = max(self.processes, len(rows))
            self.mib = max(self.mib, sum(m for _, m in rows))
            time.sleep(self.interval)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


def trial_times(folder: Path) -> list[float]:
    """Each finished trial's ``time_total_s`` under a search folder."""
    times = []
    for result in sorted(folder.glob("*/result.json")):
        lines = result.read_text().splitlines()
        if lines:
            times.append(float(json.loads(lines[-1]).get("time_total_s", float("nan"))))
    return times


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch bench gpu [--size HxW] [--batch B] [--steps N] [--precision P1,P2]
    [--models invpt,mtinet] [--iterations I] [--no-search] [--keep]``."""
    import torch

    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    if args.steps <= 0 or args.batch <= 0 or args.iterations <= 0:
        raise UserError(
            f"--steps, --batch and --iterations must be positive, got {args.steps}, {args.batch}, "
            f"{args.iterations}"
        )
    models = parse_list(args.models, MODELS, "--models")
    precisions, notes = usable_precisions(parse_list(args.precision, PRECISIONS, "--precision"), "cuda")
    h, w = args.size
    print(f"bench gpu: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, input {h}x{w}, "
          f"batch {args.batch}, {args.steps} timed steps after 1 warm-up")
    for note in notes:
        print(note)
    print(f"{'model':<8} {'setting':<10} {'precision':<9} {'s/step':>8} {'images/s':>9} {'peak MiB':>9}")
    for decoder in models:
        results = measure_all(model_config(decoder, (h, w)), (h, w), args.batch, args.steps, "cuda",
                              precisions, ["train", "train+reg"], num_classes=PAPER_CLASSES)
        for (setting, precision), r in results.items():
            print(f"{decoder:<8} {setting:<10} {precision:<9} {r['seconds']:>8.3f} "
                  f"{args.batch / r['seconds']:>9.2f} {r['peak_mib']:>9.0f}", flush=True)
        for setting in ("train", "train+reg"):
            ref = results.get((setting, "fp32"))
            others = [p for p in precisions if p != "fp32"]
            if ref and others:
                ratios = ", ".join(f"{p} x{ref['seconds'] / results[(setting, p)]['seconds']:.2f}"
                                   for p in others)
                print(f"{decoder} {setting}: speed-up over fp32 {ratios}")
    if args.no_search:
        return 0
    with scratch_folder("mtlsearch-bench-gpu-", args.keep) as work:
        return shared_search(args, work)


def shared_search(args: argparse.Namespace, work: Path) -> int:
    """Two trials at half a GPU each: one at a time, then both at once."""
    from mtlsearch.config import load_config
    from mtlsearch.data.pipeline import resolve_root
    from mtlsearch.execution.cluster import connect
    from mtlsearch.execution.search import run_search
    from mtlsearch.space import load_space

    cpus = max(1, (os.cpu_count() or 2) // 2 - 1)
    resolve_root(load_config(search_space(str(work / "cache"), args.iterations, 1, cpus)["base"]))
    connect(num_cpus=2 * cpus + 1, dashboard=False)
    walls: dict[int, float] = {}
    for concurrent in (1, 2):
        body = search_space(str(work / "cache"), args.iterations, concurrent, cpus)
        path = work / f"{body['name']}.yaml"
        path.write_text(yaml.safe_dump(body))
        with GpuSampler(exclude_pid=os.getpid()) as gpu:
            start = time.time()
            code = run_search(load_space(path), work / "trials", body["name"])
            walls[concurrent] = time.time() - start
        if code != 0:
            print(f"error: the shared-GPU search ({concurrent} at a time) failed")
            return code
        times = trial_times(work / "trials" / body["name"])
        held = (f"{gpu.processes} process(es) on the GPU at once, peak {gpu.mib:.0f} MiB"
                if gpu.available else "nvidia-smi not found: GPU processes not sampled")
        print(f"2 trials x {args.iterations} iterations, gpus_per_worker 0.5, {concurrent} at a time: "
              f"wall {walls[concurrent]:.1f} s, trials {', '.join(f'{t:.1f}' for t in times)} s; {held}",
              flush=True)
    print(f"sharing the GPU: both at once took {walls[2] / walls[1]:.2f} of the wall time of one at a time")
    return 0


__all__ = ["NO_GPU", "model_config", "run_cli", "search_space"]
