"""``mtlsearch data preview``: draw views of an NYUD_MT-layout dataset with their labels.

One row per view; columns RGB, depth, normals, segmentation (colour map), edges,
saliency. Missing label folders are drawn as empty panels; a missing dataset folder,
split file or image is a :class:`UserError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mtlsearch.data.reader import read_npy, read_png, read_split
from mtlsearch.errors import UserError
from mtlsearch.outputs import check_file_target, png_software

COLUMNS = ("RGB", "depth", "normals", "segmentation", "edges", "saliency")
PREVIEW_KIND = "data preview"
"""``--out`` may overwrite only a PNG whose ``Software`` chunk says this command wrote it."""


def _find(folder: Path, vid: str, exts: tuple[str, ...]) -> Path | None:
    for ext in exts:
        path = folder / f"{vid}{ext}"
        if path.is_file():
            return path
    return None


def _load(root: Path, vid: str) -> list[np.ndarray | None]:
    """The six panels of view ``vid`` (None where the dataset lacks that label)."""
    img_path = _find(root / "images", vid, (".png", ".jpg", ".jpeg"))
    if img_path is None:
        raise UserError(f"image of {vid!r} not found in {str(root / 'images')!r}")
    rgb = read_png(img_path, "RGB")
    panels: list[np.ndarray | None] = [rgb]
    p = _find(root / "depth", vid, (".npy",))
    panels.append(_map(p, read_npy(p).astype(np.float32).squeeze(), (2,)) if p else None)
    p = _find(root / "normals", vid, (".png", ".npy"))
    if p is None:
        panels.append(None)
    elif p.suffix == ".npy":
        n = read_npy(p).astype(np.float32)
        n = n.transpose(1, 2, 0) if n.ndim == 3 and n.shape[0] == 3 and n.shape[-1] != 3 else n
        panels.append(_map(p, np.clip((n + 1) / 2, 0, 1), (3,)))
    else:
        panels.append(read_png(p, "RGB"))
    for folder in ("segmentation", "edge", "saliency"):
        p = _find(root / folder, vid, (".png", ".npy"))
        if p is None:
            panels.append(None)
        else:
            arr = read_npy(p) if p.suffix == ".npy" else read_png(p)
            panels.append(_map(p, np.asarray(arr).squeeze(), (2, 3)))
    return panels


def _map(path: Path, arr: np.ndarray, ndims: tuple[int, ...]) -> np.ndarray:
    """``arr`` if it is a drawable (H, W) or (H, W, 3) map, else a UserError naming ``path``."""
    if arr.ndim not in ndims or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or 0 in arr.shape:
        raise UserError(f"{path}: cannot draw an array of shape {arr.shape}")
    return arr


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

    rows = [_load(root, vid) for vid in ids]
    fig, axes = plt.subplots(
        len(rows), len(COLUMNS), figsize=(2.4 * len(COLUMNS), 2.0 * len(rows)), squeeze=False
    )
    for r, (vid, panels) in enumerate(zip(ids, rows)):
        for c, (title, img) in enumerate(zip(COLUMNS, panels)):
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
            if title == "depth":
                valid = img[img > 0]
                lo, hi = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 1.0)
                ax.imshow(np.where(img > 0, img, np.nan), cmap="viridis", vmin=lo, vmax=hi)
            elif title == "segmentation":
                seg = np.ma.masked_where(img == 0, img.astype(np.float64))
                ax.imshow(seg, cmap="tab20", vmin=0, vmax=20, interpolation="nearest")
            elif title in ("edges", "saliency"):
                ax.imshow(
                    img, cmap="gray", vmin=0, vmax=max(1, int(img.max())), interpolation="nearest"
                )
            else:
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
