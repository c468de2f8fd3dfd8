"""``mtlsearch bench data``: SynthRooms generation speed and DataLoader throughput.

Generates a SynthRooms dataset of the requested size into a temporary folder (timing
views/s), then times training-split loading through the DataLoader with worker
processes in three modes: augmented, not augmented, and 2-view samples (augmented).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mtlsearch.bench.scratch import scratch_folder

BATCH = 8
MAX_BATCHES = 60


def _time_loader(root: Path, size: tuple[int, int], workers: int, overrides: dict[str, Any]) -> tuple[float, int]:
    """Samples per second over up to MAX_BATCHES batches (after two warm-up batches)."""
    from mtlsearch.config import load_config
    from mtlsearch.data.pipeline import build_datasets, build_loader

    base = {
        "data.layout": "synthrooms", "data.root": str(root), "data.crop_size": list(size),
        "data.num_workers": workers, "train.batch_size": BATCH,
        "tasks": {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0, "sal": 1.0},
    }
    cfg = load_config(None, {**base, **overrides})
    train, _, _ = build_datasets(cfg, root)
    loader = build_loader(train, cfg, train=True, distributed=False)
    n, start, it, batches = 0, 0.0, None, 0
    while batches < MAX_BATCHES + 2:
        it = it or iter(loader)
        try:
            batch = next(it)
        except StopIteration:
            it = None
            continue
        batches += 1
        if batches == 2:
            start = time.perf_counter()
        elif batches > 2:
            n += batch["views"][0]["image"].shape[0]
    dt = time.perf_counter() - start
    del loader
    return n / dt, n


def run_cli(args: Any) -> int:
    """Print generation views/s and a table of loading samples/s."""
    from mtlsearch.data.synthrooms import generate

    size = tuple(args.size)
    workers = args.workers or min(4, os.cpu_count() or 1)
    with scratch_folder("mtlsearch-bench-data-", args.keep) as tmp:
        root = tmp / "synthrooms"
        start = time.perf_counter()
        generate(root, scenes=args.scenes, views=args.views, size=size, seed=0,
                 val_fraction=0.2, workers=args.workers, progress=True)
        gen_s = time.perf_counter() - start
        n_views = args.scenes * args.views
        print(f"SynthRooms generation: {n_views} views ({args.scenes} scenes x {args.views}) at "
              f"{size[0]}x{size[1]} in {gen_s:.1f} s = {n_views / gen_s:.1f} views/s")
        modes = [
            ("augmented", {"data.augment": True}),
            ("no augmentation", {"data.augment": False}),
            ("2 views, augmented", {"data.augment": True, "data.num_views": 2}),
        ]
        rows = []
        for name, overrides in modes:
            rate, n = _time_loader(root, size, workers, overrides)
            rows.append((name, rate, n))
            print(f"  timed {name}: {n} samples", flush=True)
        print(f"\nloading the train split, batch {BATCH}, {workers} worker processes, "
              f"crop {size[0]}x{size[1]}, 5 tasks")
        print(f"| {'mode':<20} | {'samples/s':>9} | {'views/s':>8} |")
        print(f"|{'-' * 22}|{'-' * 11}|{'-' * 10}|")
        for name, rate, _ in rows:
            views = 2 if name.startswith("2 views") else 1
            print(f"| {name:<20} | {rate:>9.1f} | {rate * views:>8.1f} |")
    return 0
