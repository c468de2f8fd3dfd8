"""SynthRooms files: the dataset folder (PNG, NPY, JSON with fixed options), the
train/val split by scene, worker processes, atomic install, and the CLI.

Contract: same arguments give byte-identical files whatever the number of worker
processes; the folder appears at ``out`` only when complete.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlsearch.classes import SYNTHROOMS_CLASSES, SYNTHROOMS_OBJECT_CLASSES
from mtlsearch.data.synthrooms.shading import (
    labelled_frames,
    render_scene_views,
)
from mtlsearch.errors import UserError
from mtlsearch.outputs import check_target, install

GENERATOR_VERSION = "1.0"
_GENERATOR = "mtlsearch.data.synthrooms"
OUTPUT_KIND = "synthrooms"
"""Marker kind (``.mtlsearch-synthrooms``): ``--force`` replaces only such a dataset."""
MODALITIES = (
    "images",
    "depth",
    "normals",
    "segmentation",
    "edge",
    "saliency",
    "instances",
    "cameras",
)


# ----------------------------------------------------------------------------- files


def view_id(scene: int, frame: int) -> str:
    """The file stem of a view, e.g. ``s0003_f02``."""
    return f"s{scene:04d}_f{frame:02d}"


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=6)


def _write_scene(
    job: tuple[str, int, int, int, tuple[int, int], int],
) -> tuple[int, float, float, list[int]]:
    """Render scene ``index`` and write its files; returns (index, depth min, depth max,
    classes seen). Extra frames get an image, depth and a camera only. Runs in worker
    processes."""
    root_s, seed, index, views, size, extra = job
    root = Path(root_s)
    dmin, dmax, seen = math.inf, 0.0, set()
    labelled = set(labelled_frames(views, extra))
    for frame, v in enumerate(render_scene_views(seed, index, views, size, extra)):
        vid = view_id(index, frame)
        _save_png(root / "images" / f"{vid}.png", v["rgb"])
        np.save(root / "depth" / f"{vid}.npy", v["depth"])
        _save_camera(root, vid, v, index, frame)
        dmin, dmax = min(dmin, float(v["depth"].min())), max(dmax, float(v["depth"].max()))
        if frame not in labelled:
            continue
        nrm = np.round((v["normals"].astype(np.float64) + 1) / 2 * 255).astype(np.uint8)
        _save_png(root / "normals" / f"{vid}.png", nrm)
        _save_png(root / "segmentation" / f"{vid}.png", (v["semseg"] + 1).astype(np.uint8))
        _save_png(root / "edge" / f"{vid}.png", v["edge"] * np.uint8(255))
        _save_png(root / "saliency" / f"{vid}.png", v["sal"] * np.uint8(255))
        _save_png(root / "instances" / f"{vid}.png", v["instances"])
        seen.update(int(c) for c in np.unique(v["semseg"]))
    return index, dmin, dmax, sorted(seen)


def _save_camera(root: Path, vid: str, v: dict[str, np.ndarray], index: int, frame: int) -> None:
    cam = {
        "K": v["K"].tolist(),
        "cam2world": v["cam2world"].tolist(),
        "scene": f"s{index:04d}",
        "frame": frame,
    }
    (root / "cameras" / f"{vid}.json").write_text(json.dumps(cam, sort_keys=True) + "\n")


def split_scenes(scenes: int, val_fraction: float, seed: int) -> list[int]:
    """Scene indices of the validation split (sorted).

    ``round(val_fraction * scenes)`` scenes drawn with a seeded permutation; with at least
    two scenes and ``val_fraction > 0`` each split gets at least one scene. One scene, or
    ``val_fraction == 0``: everything is train.
    """
    if scenes < 2 or val_fraction <= 0:
        return []
    n_val = min(max(round(val_fraction * scenes), 1), scenes - 1)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return sorted(int(i) for i in rng.permutation(scenes)[:n_val])


def _replaceable(out: Path) -> bool:
    """A dataset this generator wrote before output markers existed (its ``meta.json``,
    nothing but the dataset's own folders): ``--force`` may replace it."""
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    own = {*MODALITIES, "gt_sets", "meta.json"}
    if any(p.name not in own for p in out.iterdir()):
        return False
    return isinstance(meta, dict) and meta.get("generator") == _GENERATOR


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which terminates the pool and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _mp_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux: workers inherit the imported modules (``mtlsearch.tasks`` pulls in
    torch, seconds per spawned worker) and only run numpy and PIL. Spawn elsewhere."""
    if sys.platform == "linux":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _check_args(
    out: Path,
    scenes: int,
    views: int,
    size: tuple[int, int],
    seed: int,
    val_fraction: float,
    workers: int | None,
    force: bool,
) -> None:
    if not isinstance(scenes, int) or scenes < 1:
        raise UserError(f"--scenes must be a positive integer, got {scenes!r}")
    if not isinstance(views, int) or views < 1:
        raise UserError(f"--views must be a positive integer, got {views!r}")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(not isinstance(s, (int, np.integer)) or s < 8 for s in size)
    ):
        raise UserError(f"--size must be HxW with both sides >= 8, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be a positive integer, got {workers!r}")
    check_target(out, OUTPUT_KIND, replace=force, force_hint="--force", legacy=_replaceable)


def generate(
    out: str | Path,
    scenes: int = 20,
    views: int = 4,
    size: tuple[int, int] = (120, 160),
    seed: int = 0,
    val_fraction: float = 0.2,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    extra_views: int = 0,
) -> Path:
    """Generate a SynthRooms dataset into ``out`` and return its path.

    ``extra_views`` > 0 adds that many video frames per room along the same camera walk
    (the labelled frames spread evenly among them, :func:`labelled_frames`), each with an
    image, depth and a camera only, listed in ``gt_sets/extra.txt``, like NYUv2's raw
    frames; ids keep the path position (``s0003_f01``). With 0 the output is exactly
    that of the generator without the option.

    The dataset is built in ``<out>.tmp-<pid>`` and renamed to ``out`` when complete, so
    an interrupted run leaves nothing at ``out``. An existing ``out`` is refused unless
    ``force``; then the new dataset is built first, swapped in, and the old one deleted.
    ``force`` only replaces an empty folder or an earlier SynthRooms dataset. ``workers``
    processes (default: all cores) render scenes in parallel; the files are identical
    to a serial run. A run killed outright (SIGKILL) may leave ``<out>.tmp-<pid>`` behind.
    """
    out = Path(os.path.abspath(out))
    _check_args(out, scenes, views, size, seed, val_fraction, workers, force)
    if not isinstance(extra_views, int) or isinstance(extra_views, bool) or not 0 <= extra_views <= 256:
        raise UserError(f"--extra-views must be an integer in [0, 256], got {extra_views!r}")
    size = (int(size[0]), int(size[1]))
    workers = min(workers or os.cpu_count() or 1, scenes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for sub in (*MODALITIES, "gt_sets"):
            (tmp / sub).mkdir(parents=True)
        jobs = [(str(tmp), seed, i, views, size, extra_views) for i in range(scenes)]
        results = []
        from tqdm import tqdm

        with tqdm(
            total=scenes, desc="synthrooms", unit="scene", file=sys.stderr, disable=not progress
        ) as bar:
            if workers == 1:
                for job in jobs:
                    results.append(_write_scene(job))
                    bar.update()
            else:
                with _mp_context().Pool(workers, initializer=_ignore_sigint) as pool:
                    for res in pool.imap(_write_scene, jobs, chunksize=1):
                        results.append(res)
                        bar.update()
        val = set(split_scenes(scenes, val_fraction, seed))
        frames = labelled_frames(views, extra_views)
        for name, keep in (("train", lambda i: i not in val), ("val", lambda i: i in val)):
            ids = [view_id(i, f) for i in range(scenes) if keep(i) for f in frames]
            (tmp / "gt_sets" / f"{name}.txt").write_text("".join(f"{x}\n" for x in ids))
        if extra_views:
            others = [f for f in range(views + extra_views) if f not in set(frames)]
            ids = [view_id(i, f) for i in range(scenes) for f in others]
            (tmp / "gt_sets" / "extra.txt").write_text("".join(f"{x}\n" for x in ids))
        meta = _meta(scenes, views, size, seed, val_fraction, results, len(val))
        if extra_views:
            meta["params"]["extra_views"] = extra_views
            meta["splits"]["extra"] = scenes * extra_views
            meta["encodings"]["extra"] = (
                "gt_sets/extra.txt: video frames with images, depth and cameras only"
            )
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True, indent=2) + "\n")
        install(tmp, out, OUTPUT_KIND, replace=force, force_hint="--force", legacy=_replaceable)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _meta(
    scenes: int,
    views: int,
    size: tuple[int, int],
    seed: int,
    val_fraction: float,
    results: list[tuple[int, float, float, list[int]]],
    n_val: int,
) -> dict[str, Any]:
    seen = sorted({c for r in results for c in r[3]})
    return {
        "generator": _GENERATOR,
        "version": GENERATOR_VERSION,
        "params": {
            "scenes": scenes,
            "views": views,
            "size": list(size),
            "seed": seed,
            "val_fraction": val_fraction,
        },
        "classes": list(SYNTHROOMS_CLASSES),
        "object_classes": list(SYNTHROOMS_OBJECT_CLASSES),
        "classes_present": [SYNTHROOMS_CLASSES[c] for c in seen],
        "image_size": list(size),
        "depth_range": [round(min(r[1] for r in results), 4), round(max(r[2] for r in results), 4)],
        "num_views": views,
        "splits": {"train": (scenes - n_val) * views, "val": n_val * views},
        "encodings": {
            "depth": "npy float32 z-depth in metres, 0 = invalid (unused: every pixel valid)",
            "normals": "png uint8 round((n + 1) / 2 * 255), camera frame x right y down z forward",
            "segmentation": "png uint8, 0 = void, class k stored as k + 1",
            "edge": "png uint8 0/255, 255 where a 4-neighbour has another instance (both sides)",
            "saliency": "png uint8 0/255, 255 on object classes",
            "instances": "png uint16 instance id, unique per scene, stable across views",
            "cameras": "json K (3x3), cam2world (4x4, OpenCV camera axes), scene, frame",
        },
    }


def run_cli(args: Any) -> int:
    """``mtlsearch data synthrooms``: generate and print a one-line summary."""
    start = time.perf_counter()
    out = generate(
        args.out,
        scenes=args.scenes,
        views=args.views,
        size=tuple(args.size),
        seed=args.seed,
        val_fraction=args.val_fraction,
        workers=args.workers,
        force=args.force,
        extra_views=args.extra_views,
    )
    dt = time.perf_counter() - start
    n = args.scenes * (args.views + args.extra_views)
    extra = f" + {args.extra_views} depth-only" if args.extra_views else ""
    print(
        f"wrote {n} views ({args.scenes} scenes x {args.views}{extra}) to {out} in {dt:.1f} s "
        f"({n / dt:.1f} views/s)"
    )
    return 0
