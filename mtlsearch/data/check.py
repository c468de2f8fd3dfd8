"""``mtlsearch data check``: validate a dataset folder and summarise it.

Every id of every split is checked for every task the folder provides: the file
exists, decodes, has the image's size and legal label values; cameras (when the
folder has them) must parse, with a proper rotation in ``cam2world`` and positive
focal lengths. All problems are collected and listed, file by file.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.data.reader import Reader
from mtlsearch.errors import UserError
from mtlsearch.tasks import get_task


@dataclass
class CheckReport:
    """Problems found and summary figures of one dataset folder."""

    root: str
    layout: str
    tasks: list[str]
    splits: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    ranges: dict[str, list[float]] = field(default_factory=dict)
    classes_seen: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    cameras: int = 0
    scenes: int = 0
    has_cameras: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def update_range(self, key: str, lo: float, hi: float) -> None:
        cur = self.ranges.get(key)
        self.ranges[key] = [lo, hi] if cur is None else [min(cur[0], lo), max(cur[1], hi)]


def _check_label(task: str, label: np.ndarray, reader: Reader, report: CheckReport) -> str | None:
    """Record what the task's check learns from the label; return its problem or None."""
    spec = get_task(task)
    check = spec.check_label(label, reader.num_classes.get(task) or spec.channels(reader.layout))
    if check.classes is not None:
        report.classes_seen[task].update(check.classes)
    for key, (lo, hi) in check.ranges.items():
        report.update_range(key, lo, hi)
    return check.problem


def _check_camera(reader: Reader, id_: str) -> tuple[Any, str | None]:
    try:
        cam = reader.camera(id_)
    except UserError as err:
        return None, str(err)
    R = cam.cam2world[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0:
        return cam, f"{reader.camera_path(id_)}: cam2world rotation is not a proper rotation"
    if not np.allclose(cam.cam2world[3], [0, 0, 0, 1]):
        return cam, f"{reader.camera_path(id_)}: cam2world last row must be 0 0 0 1"
    if cam.K[0, 0] <= 0 or cam.K[1, 1] <= 0:
        return cam, f"{reader.camera_path(id_)}: focal lengths must be positive"
    return cam, None


def check_dataset(root: str | Path, layout: str = "nyud", splits: tuple[str, ...] = ("train", "val"),
                  progress: bool = True) -> CheckReport:
    """Validate every listed id of ``splits`` for every task; never stops at the first
    problem."""
    from mtlsearch.data.pipeline import make_reader

    reader = make_reader(layout, root)
    report = CheckReport(str(reader.root), reader.layout, list(reader.tasks), has_cameras=reader.has_cameras)
    if not reader.tasks:
        report.problems.append(f"{reader.root}: no task folders found")
    scenes: set[str] = set()
    jobs: list[tuple[str, str]] = []
    for split in splits:
        try:
            ids = reader.split_ids(split)
        except UserError as err:
            report.problems.append(str(err))
            continue
        report.splits[split] = len(ids)
        seen: set[str] = set()
        for id_ in ids:
            if id_ in seen:
                report.problems.append(f"{split}: id {id_!r} listed twice")
            seen.add(id_)
            jobs.append((split, id_))
    from tqdm import tqdm

    for _split, id_ in tqdm(jobs, desc="checking", unit="view", disable=not progress, leave=False):
        size = None
        try:
            size = reader.read_image(id_).shape[:2]
        except UserError as err:
            report.problems.append(str(err))
        for task in reader.tasks:
            path = reader.label_path(id_, task)
            try:
                label = reader.read_label(id_, task)
            except UserError as err:
                report.problems.append(str(err))
                continue
            if size is not None and label.shape[:2] != size:
                report.problems.append(f"{path}: size {label.shape[0]}x{label.shape[1]} differs from "
                                       f"the image's {size[0]}x{size[1]}")
            problem = _check_label(task, label, reader, report)
            if problem:
                report.problems.append(f"{path}: {problem}")
        if reader.has_cameras:
            cam, problem = _check_camera(reader, id_)
            if problem:
                report.problems.append(problem)
            if cam is not None:
                report.cameras += 1
                scenes.add(cam.scene)
    report.scenes = len(scenes)
    return report


def format_report(report: CheckReport) -> str:
    """Human-readable summary followed by the list of problems."""
    lines = [f"dataset {report.root} (layout {report.layout})"]
    lines.append("  images: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()))
    lines.append(f"  tasks: {', '.join(report.tasks) or 'none'}")
    for task, classes in sorted(report.classes_seen.items()):
        if classes:
            lines.append(f"  {task}: {len(classes)} classes seen, ids {min(classes)}..{max(classes)}")
    for key, (lo, hi) in sorted(report.ranges.items()):
        lines.append(f"  {key}: {lo:.3f}..{hi:.3f}")
    if report.has_cameras:
        lines.append(f"  cameras: {report.cameras} files, {report.scenes} scenes")
    else:
        lines.append("  cameras: none")
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"  - {p}" for p in report.problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def run_cli(args: Any) -> int:
    """``mtlsearch data check ROOT [--layout nyud|pascal]``: 0 when clean, 1 otherwise."""
    report = check_dataset(args.root, args.layout)
    print(format_report(report))
    return 0 if report.ok else 1


def preflight(cfg: Any, root: str | Path) -> None:
    """Cheap checks of a training run's dataset before any process starts: the layout's
    reader opens ``root``, provides the config's tasks, both split lists read, and the
    first view of each split decodes. Raises :class:`UserError` naming the file."""
    from mtlsearch.data.pipeline import make_reader

    reader = make_reader(cfg.data.layout, root)
    tasks = list(cfg.tasks)
    reader.check_tasks(tasks)
    for split in ("train", "val"):
        ids = reader.split_ids(split)
        if ids:
            reader.read_view(ids[0], tasks)
