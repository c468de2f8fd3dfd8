"""``mtlsearch data preview``: draw views of an NYUD_MT-layout dataset with their labels.

One row per view; columns RGB and every task the NYUD_MT format can hold, in registry
order, each label decoded by the reader and drawn in its task's preview colours
(``TaskSpec.preview``, ``colour_scale``). A task the dataset lacks, or a view without that
label, is an empty panel; a missing dataset folder, split file or image is a
:class:`UserError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.data.nyud import NyudReader
from mtlsearch.data.reader import read_split
from mtlsearch.errors import UserError
from mtlsearch.outputs import check_file_target, png_software
from mtlsearch.tasks import TASKS

PREVIEW_KIND = "data preview"
"""``--out`` may overwrite only a PNG whose ``Software`` chunk says this command wrote it."""


def _load(reader: NyudReader, vid: str, tasks: list[str]) -> list[np.ndarray | None]:
    """The panels of view ``vid``: its image, then each task's label in preview colours
    (None where the dataset lacks that label)."""
    if not reader.image_path(vid).is_file():
        raise UserError(f"image of {vid!r} not found in {str(reader.root / 'images')!r}")
    provided = [t for t in tasks if t in reader.tasks]
    view = reader.read_view(vid, provided, partial=True)
    panels: list[np.ndarray | None] = [view["image"]]
    for task in tasks:
        if task not in provided or not view["has"][task]:
            panels.append(None)
            continue
        spec, label = TASKS[task], view["labels"][task]
        channels = reader.num_classes.get(task) or spec.channels(reader.layout)
        panels.append(spec.preview(label, spec.colour_scale(label, channels)))
    return panels


def draw_preview(root: str | Path, out: str | Path, num: int = 4, split: str = "train") -> Path:
    """Write a PNG grid of the first ``num`` views of ``split`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise UserError(f"dataset folder {str(root)!r} not found")
    if num < 1:
        raise UserError(f"--num must be a positive integer, got {num}")
    split_file = root / "gt_sets" / f"{split}.txt"
    if not split_file.is_file():
        raise UserError(f"split file {str(split_file)!r} not found (--split {split})")
    ids = read_split(split_file)[:num]
    if not ids:
        raise UserError(f"split file {str(split_file)!r} lists no views")
    out = check_file_target(out, PREVIEW_KIND)

    reader = NyudReader(root)
    tasks = [name for name, spec in TASKS.items() if reader.format in spec.files]
    columns = ["RGB", *(TASKS[t].title for t in tasks)]
    rows = [_load(reader, vid, tasks) for vid in ids]
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(2.4 * len(columns), 2.0 * len(rows)), squeeze=False
    )
    for r, (vid, panels) in enumerate(zip(ids, rows)):
        for c, (title, img) in enumerate(zip(columns, panels)):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(vid, fontsize=8)
            if img is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
                continue
            ax.imshow(img, interpolation="nearest")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=100, metadata={"Software": png_software(PREVIEW_KIND)})
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def run_cli(args: Any) -> int:
    """``mtlsearch data preview ROOT --out PNG``."""
    out = draw_preview(args.root, args.out, num=args.num, split=args.split)
    print(f"wrote {out}")
    return 0
