"""From a config to datasets and data loaders.

* :func:`resolve_root` finds (or generates and caches) the dataset folder.
* :func:`build_datasets` returns the training and validation datasets and a
  :class:`DatasetInfo` (tasks, classes, cameras, sizes).
* :func:`build_loader` wraps a dataset in a DataLoader (worker processes, DDP sampler,
  seeded worker RNG).

Samples are ``{"views": [view_0, ...]}``, view 0 the reference; see
:mod:`mtlsearch.data.transforms` for the geometry of augmentation and
:mod:`mtlsearch.data.multiview` for how source views are chosen.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mtlsearch.config import ALL_TASKS, Config
from mtlsearch.data.fractions import fraction_subset
from mtlsearch.data.multiview import ViewGraph, fill_missing, set_rel_poses, source_copy
from mtlsearch.data.reader import Reader
from mtlsearch.data.transforms import (
    AugmentSettings,
    draw_params,
    round_up,
    train_transform,
    val_transform,
)
from mtlsearch.errors import UserError

SMALL_SYNTH_PIXELS = 2_000_000
"""Below this many pixels in total, SynthRooms is generated without worker processes."""


def needs_cameras(cfg: Config) -> list[str]:
    """The enabled components that need camera poses (empty: none does)."""
    need = []
    if cfg.cvm.enabled:
        need.append("cvm.enabled (the cross-view module's cost volume)")
    if cfg.regularizer.enabled and cfg.regularizer.cross_view.enabled:
        need.append("regularizer.cross_view.enabled (cross-view consistency, Eq. 3)")
    if cfg.data.extra_frames:
        need.append("data.extra_frames (video frames are placed by their poses)")
    return need


def check_dataset(cfg: Config, reader: Reader) -> None:
    """Refuse multi-view settings the dataset cannot serve, naming what is missing.

    A dataset without ``cameras/`` is a :class:`UserError` naming the folder when the
    cross-view module, cross-view consistency or extra frames are enabled, unless
    ``data.single_view_duplication`` asks to pair each view with itself at the identity
    pose (the cost volume then carries no geometry and Eq. 3 repeats the Eq. 2 depth
    term; extra frames always need cameras). ``data.extra_frames`` also needs the list
    of extra frames (``gt_sets/extra.txt``) and a multi-view sample to put them in.
    """
    need = needs_cameras(cfg)
    if need and not reader.has_cameras and not (
        cfg.data.single_view_duplication and not cfg.data.extra_frames
    ):
        folder = reader.root / "cameras"
        hint = f"import poses with `mtlsearch data import-colmap <sparse model> --out {folder}`"
        if not cfg.data.extra_frames:
            hint += (", or set data.single_view_duplication: true to pair each view with "
                     "itself at the identity pose (no geometry)")
        raise UserError(f"{folder}/ is missing, but {'; '.join(need)} needs camera poses; {hint}")
    if cfg.data.extra_frames:
        path = reader.extra_split_path()
        if not path.is_file():
            raise UserError(f"data.extra_frames: the dataset lists no extra frames ({path} is missing)")
        if effective_num_views(cfg) < 2:
            raise UserError(
                "data.extra_frames: extra frames are source views of multi-view samples; "
                "set data.num_views >= 2 (or enable cvm / regularizer.cross_view)"
            )


def supervise_all_views(cfg: Config) -> bool:
    """``data.supervise_all_views``, defaulting to on exactly when extra frames are used."""
    value = cfg.data.supervise_all_views
    return bool(cfg.data.extra_frames) if value is None else bool(value)


def effective_num_views(cfg: Config) -> int:
    """Views per training sample: the most any enabled component needs."""
    n = cfg.data.num_views
    if cfg.cvm.enabled:
        n = max(n, cfg.cvm.num_views)
    if cfg.regularizer.enabled and cfg.regularizer.cross_view.enabled:
        n = max(n, 2)
    return n


# ---------------------------------------------------------------------------
# Dataset folder
# ---------------------------------------------------------------------------


def synth_cache_key(cfg: Config) -> str:
    """Hash of the SynthRooms parameters (and generator version) naming the cache folder."""
    from mtlsearch.data.synthrooms import GENERATOR_VERSION

    s = cfg.data.synth
    params = {
        "scenes": s.scenes, "views": s.views, "size": list(s.size), "seed": s.seed,
        "val_fraction": s.val_fraction, "version": GENERATOR_VERSION,
    }
    if s.extra_views:
        params["extra_views"] = s.extra_views
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def resolve_root(cfg: Config) -> Path:
    """The dataset folder, absolute, checked against the config's multi-view needs
    (:func:`check_dataset`), so the driver refuses before any training starts. With
    ``layout: synthrooms`` and an empty ``data.root``, SynthRooms is generated from
    ``data.synth`` into ``<cache_dir>/synthrooms-<hash>`` once and reused; the dataset is
    built in a private folder and renamed into place, so concurrent callers are safe (a
    caller that loses the race discards its copy and uses the winner's)."""
    root = _locate_root(cfg)
    check_dataset(cfg, make_reader(cfg.data.layout, root))
    return root


def _locate_root(cfg: Config) -> Path:
    if cfg.data.root:
        root = Path(cfg.data.root).expanduser().resolve()
        if not root.is_dir():
            raise UserError(f"data.root: dataset folder not found: {root}")
        return root
    if cfg.data.layout != "synthrooms":
        raise UserError(f"data.root: required for layout {cfg.data.layout!r}")
    from mtlsearch.data.synthrooms import generate

    cache = Path(cfg.data.synth.cache_dir).expanduser().resolve()
    final = cache / f"synthrooms-{synth_cache_key(cfg)}"
    if (final / "meta.json").is_file():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    build = cache / f".build-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    s = cfg.data.synth
    print(f"generating SynthRooms ({s.scenes} scenes x {s.views} views) into {final}",
          file=sys.stderr, flush=True)
    # Small datasets render in-process: spawning workers would cost more than rendering.
    workers = 1 if s.scenes * s.views * s.size[0] * s.size[1] < SMALL_SYNTH_PIXELS else None
    try:
        generate(build, scenes=s.scenes, views=s.views, size=tuple(s.size), seed=s.seed,
                 val_fraction=s.val_fraction, workers=workers, progress=True,
                 extra_views=s.extra_views)
        try:
            os.rename(build, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
            # Another process finished first: use its copy.
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return final


def make_reader(layout: str, root: str | Path) -> Reader:
    """The reader of ``layout`` (``synthrooms`` and ``nyud`` share the NYUD_MT reader)."""
    if layout in ("nyud", "synthrooms"):
        from mtlsearch.data.nyud import NyudReader

        return NyudReader(root, layout)
    if layout == "pascal":
        from mtlsearch.data.pascal import PascalReader

        return PascalReader(root)
    raise UserError(f"data.layout: unknown layout {layout!r} (known: synthrooms, nyud, pascal)")


# ---------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------


@dataclass
class DatasetInfo:
    """What the model and trainer need to know about the data."""

    layout: str
    root: str
    tasks: list[str]
    """Tasks the dataset provides (a superset of the config's tasks)."""
    num_classes: dict[str, int] = field(default_factory=dict)
    """Classes of the class-valued tasks provided (semseg, parts)."""
    has_cameras: bool = False
    train_size: int = 0
    val_size: int = 0
    val_image_size: tuple[int, int] = (0, 0)
    """Size validation views are padded to."""
    extra_frames: int = 0
    """Extra frames the training samples draw source views from (``data.extra_frames``)."""


class MultiTaskDataset(Dataset):
    """Samples ``{"views": [...]}`` of ``ids``: training (random augmentation, shared by
    the views of a sample) or evaluation (no randomness, padded to ``val_image_size``)."""

    def __init__(
        self,
        reader: Reader,
        ids: list[str],
        tasks: list[str],
        *,
        train: bool,
        num_views: int = 1,
        source_tasks: list[str] | None = None,
        augment: AugmentSettings | None = None,
        val_image_size: tuple[int, int] = (0, 0),
        seed: int = 0,
        extra_ids: list[str] | None = None,
    ) -> None:
        reader.check_tasks(tasks)
        if not ids:
            raise UserError(f"{reader.root}: the {'training' if train else 'validation'} split is empty")
        self.reader = reader
        self.ids = list(ids)
        self.tasks = list(tasks)
        self.train = train
        self.num_views = int(num_views)
        self.source_tasks = list(source_tasks) if source_tasks else None
        self.augment = augment or AugmentSettings()
        self.val_image_size = tuple(val_image_size)
        self.seed = seed
        self._rng: np.random.Generator | None = None
        self.extra_ids = [i for i in (extra_ids or []) if i not in set(self.ids)]
        self._extra = set(self.extra_ids)
        members = self.ids + self.extra_ids
        cameras = {i: reader.camera(i) for i in members} if reader.has_cameras else None
        self.graph = ViewGraph(members, cameras)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.ids)

    def set_rng(self, seed: int) -> None:
        """Seed this process's augmentation RNG (called in each loader worker)."""
        self._rng = np.random.default_rng(seed)

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            # Inside a loader worker (e.g. when wrapped in a Subset) use its distinct seed.
            info = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng(info.seed if info is not None else self.seed)
        return self._rng

    def with_views(self, num_views: int) -> MultiTaskDataset:
        """A copy yielding ``num_views`` views per sample (e.g. multi-view validation)."""
        other = MultiTaskDataset.__new__(MultiTaskDataset)
        other.__dict__.update(self.__dict__)
        other.num_views = int(num_views)
        other._rng = None
        return other

    def __getitem__(self, index: int) -> dict[str, Any]:
        ref_id = self.ids[index]
        src_tasks = self.source_tasks if self.source_tasks is not None else self.tasks
        src_tasks = [t for t in self.tasks if t in src_tasks]
        raw = [self.reader.read_view(ref_id, self.tasks)]
        sources = self.graph.neighbours(ref_id, self.num_views - 1)
        distinct = [s for s in sources if s != ref_id]
        decoded: dict[str, dict[str, Any]] = {}
        for s in dict.fromkeys(distinct):
            view = self.reader.read_view(s, src_tasks, partial=s in self._extra)
            decoded[s] = fill_missing(view, self.tasks)

        if self.train:
            params = draw_params(self.rng, self.augment)
            ref = train_transform(raw[0], self.augment, params, self.rng)
            cache = {s: train_transform(v, self.augment, params, self.rng) for s, v in decoded.items()}
        else:
            ref = _with_size(val_transform(raw[0], self.val_image_size), raw[0])
            cache = {s: _with_size(val_transform(v, self.val_image_size), v) for s, v in decoded.items()}

        keep = set(src_tasks) if self.source_tasks is not None else None
        views = [ref]
        for s in sources:
            views.append(source_copy(ref, keep) if s == ref_id else _shallow(cache[s]))
        if len(views) > 1:
            set_rel_poses(views)
            for s, view in zip(sources, views[1:]):
                if s == ref_id:
                    view["rel_pose"] = torch.eye(4)
        return {"views": views}


def _with_size(view: dict[str, Any], decoded: dict[str, Any]) -> dict[str, Any]:
    """Record a validation view's size before padding (``valid_size``, (2,) int64): the
    boundary metric scores only that part (:func:`mtlsearch.evaluate.update_metric`)."""
    view["valid_size"] = torch.tensor(decoded["image"].shape[:2], dtype=torch.int64)
    return view


def _shallow(view: dict[str, Any]) -> dict[str, Any]:
    out = dict(view)
    out["labels"] = dict(view["labels"])
    out["has"] = dict(view["has"])
    return out


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _val_image_size(cfg: Config, reader: Reader, val_ids: list[str]) -> tuple[int, int]:
    if cfg.data.val_size != (0, 0):
        h, w = cfg.data.val_size
        if h <= 0 or w <= 0:
            raise UserError(f"data.val_size: both sides must be positive, got {cfg.data.val_size}")
        return (h, w)
    if reader.layout == "pascal":
        return (512, 512)
    from PIL import Image

    path = reader.image_path(val_ids[0])
    try:
        with Image.open(path) as img:
            w, h = img.size
    except OSError as err:
        raise UserError(f"cannot read {path}: {err}") from None
    return round_up((h, w), 32)


def build_datasets(
    cfg: Config, root: str | Path | None = None, *, val_num_views: int = 1
) -> tuple[MultiTaskDataset, MultiTaskDataset, DatasetInfo]:
    """Training and validation datasets for ``cfg`` (root: ``resolve_root(cfg)`` unless
    given) and their :class:`DatasetInfo`.

    Training: the ``data.fraction`` subset of the train split, ``effective_num_views``
    views per sample (sources drawn also from the extra frames of those scenes with
    ``data.extra_frames``), augmentation from ``data.*``. Validation: the whole val split (at
    most ``data.max_val_images``), ``val_num_views`` views per sample (1 by default; see
    also :meth:`MultiTaskDataset.with_views`), no randomness.
    """
    root = Path(root) if root is not None else resolve_root(cfg)
    reader = make_reader(cfg.data.layout, root)
    tasks = cfg.task_names
    reader.check_tasks(tasks)
    check_dataset(cfg, reader)
    for task in cfg.data.source_tasks:
        if task not in ALL_TASKS:
            raise UserError(f"data.source_tasks: unknown task {task!r} (known: {', '.join(ALL_TASKS)})")
        if task not in tasks:
            raise UserError(f"data.source_tasks: {task!r} is not one of the config's tasks")

    train_ids = reader.split_ids("train")
    val_ids = reader.split_ids("val")
    if not train_ids:
        raise UserError(f"{root}: the train split lists no images")
    if not val_ids:
        raise UserError(f"{root}: the val split lists no images")
    scenes = reader.scenes(train_ids)
    train_ids = fraction_subset(train_ids, cfg.data.fraction, cfg.data.fraction_seed, scenes)
    if cfg.data.max_val_images > 0:
        val_ids = val_ids[: cfg.data.max_val_images]
    val_image_size = _val_image_size(cfg, reader, val_ids)

    extra_ids: list[str] = []
    if cfg.data.extra_frames:
        # Only the extra frames of the (fraction's) training scenes: none of validation's.
        train_scenes = set((scenes or {}).get(i) for i in train_ids)
        extra_ids = [i for i in reader.extra_ids() if reader.camera(i).scene in train_scenes]  # type: ignore[union-attr]
        if not extra_ids:
            raise UserError(
                f"data.extra_frames: {reader.extra_split_path()} lists no frame of the "
                "training scenes"
            )
    common = dict(tasks=tasks, source_tasks=cfg.data.source_tasks or None, seed=cfg.train.seed)
    train_ds = MultiTaskDataset(
        reader, train_ids, train=True, num_views=effective_num_views(cfg),
        augment=AugmentSettings.from_config(cfg.data), extra_ids=extra_ids,
        **common,  # type: ignore[arg-type]
    )
    if train_ds.num_views > 1 and reader.has_cameras:
        alone = train_ds.graph.alone(train_ds.ids)
        if alone:
            print(f"note: {len(alone)} of {len(train_ds.ids)} training views have no other view in "
                  f"their scene (e.g. {alone[0]}): their source view is themselves at the identity "
                  "pose", file=sys.stderr, flush=True)
    val_ds = MultiTaskDataset(
        reader, val_ids, train=False, num_views=val_num_views,
        val_image_size=val_image_size, **common,  # type: ignore[arg-type]
    )
    num_classes = {t: n for t, n in reader.num_classes.items() if t in reader.tasks and n}
    info = DatasetInfo(
        layout=cfg.data.layout, root=str(reader.root), tasks=list(reader.tasks),
        num_classes=num_classes, has_cameras=reader.has_cameras,
        train_size=len(train_ds), val_size=len(val_ds), val_image_size=val_image_size,
        extra_frames=len(train_ds.extra_ids),
    )
    return train_ds, val_ds, info


def _seed_worker(worker_id: int) -> None:
    """Seed numpy, random and the dataset's augmentation RNG from the worker's torch seed
    (distinct per worker and rank, reproducible from ``train.seed``)."""
    torch.set_num_threads(1)  # workers run in parallel already; avoid oversubscription
    info = torch.utils.data.get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    dataset = info.dataset if info is not None else None
    if isinstance(dataset, MultiTaskDataset):
        dataset.set_rng(seed)


def build_loader(dataset: Dataset, cfg: Config, train: bool, distributed: bool) -> DataLoader:
    """DataLoader over ``dataset``: ``data.num_workers`` persistent worker processes,
    a DistributedSampler when ``distributed`` (call ``loader.sampler.set_epoch(e)`` each
    epoch), shuffling and ``drop_last`` for training, worker RNGs seeded from
    ``train.seed`` and the process rank."""
    rank = 0
    if distributed and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
    batch = cfg.train.batch_size
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=cfg.train.seed, drop_last=train)
    n_items = len(sampler) if sampler is not None else len(dataset)  # type: ignore[arg-type]
    drop_last = train and n_items >= batch
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + rank)
    workers = max(0, cfg.data.num_workers)
    if isinstance(dataset, MultiTaskDataset) and workers == 0:
        dataset.set_rng(cfg.train.seed * 1000 + rank)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=generator,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available(),
    )
