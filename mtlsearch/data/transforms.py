"""Geometric and photometric transforms that keep every task and the cameras consistent.

A view goes in as decoded numpy (``Reader.read_view``) and comes out in the sample
format of :mod:`mtlsearch.data.pipeline` (torch tensors, ImageNet-normalised image, labels in
:mod:`mtlsearch.tasks` conventions, ``K`` and ``cam2world`` after augmentation).

Geometry (pixel centres at integer coordinates, OpenCV camera frame):

* Scale by s: the image is resampled to (round(H s), round(W s)); with the exact
  factors sx = W'/W, sy = H'/H, fx' = sx fx, cx' = sx (cx + 0.5) - 0.5 (same for y),
  which is what centre-aligned resampling does. Depth is divided by s, so each
  back-projected point becomes X / s: the world is uniformly scaled by 1/s, and
  the translation of ``cam2world`` is divided by s too. All views of one sample share
  s, so relative poses stay consistent.
* Crop (or pad) a window at offset (oy, ox): cx'' = cx' - ox, cy'' = cy' - oy. A
  negative offset or a window reaching past the image pads with ignore values
  (depth 0, normals 0, classes/edge/sal 255) and RGB 0 after normalisation (= the mean).
* Horizontal flip of a w-wide image: u' = w - 1 - u, i.e. the camera frame is mirrored
  by M = diag(-1, 1, 1): K' = F K M with F = [[-1, 0, w - 1], [0, 1, 0], [0, 0, 1]]
  (so cx' = w - 1 - cx), normals' x is negated, and the world is mirrored as well:
  cam2world' = M4 cam2world M4 with M4 = diag(-1, 1, 1, 1), a proper rigid transform.
  All views of a sample flip together, so rel_pose' = M4 rel_pose M4 and reprojection
  between views still holds.
* Discrete labels, depth and normals are resampled with centre-aligned nearest
  neighbour (no blending of invalid pixels); RGB bilinearly (antialiased when shrinking).
  What scaling and mirroring do to a label's values (depths divided by s, normals' x
  negated) is each task's ``transform_label`` hook.

Validation: no random transform; each view is padded at the bottom/right to a fixed
size (``data.val_size``, or a default from the dataset) so batches collate, with K
unchanged. Padded pixels carry ignore values, so metrics score the real pixels only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtlsearch.errors import UserError
from mtlsearch.tasks import get_task

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
MIRROR4 = np.diag([-1.0, 1.0, 1.0, 1.0])
MIRROR3 = np.diag([-1.0, 1.0, 1.0])


@dataclass
class AugmentSettings:
    """What the training transform may do (from ``cfg.data``)."""

    crop_size: tuple[int, int] = (96, 128)
    scale_range: tuple[float, float] = (1.0, 1.0)
    flip: bool = False
    photometric: bool = False
    random_crop: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    @classmethod
    def from_config(cls, data_cfg: Any) -> AugmentSettings:
        """Training settings; ``data.augment: false`` keeps only a centred crop/pad."""
        if not data_cfg.augment:
            return cls(crop_size=tuple(data_cfg.crop_size), random_crop=False)
        lo, hi = data_cfg.scale_range
        if not 0 < lo <= hi:
            raise UserError(f"data.scale_range: need 0 < low <= high, got {data_cfg.scale_range}")
        return cls(
            crop_size=tuple(data_cfg.crop_size),
            scale_range=(float(lo), float(hi)),
            flip=data_cfg.flip,
            photometric=data_cfg.photometric,
        )


@dataclass
class SampleParams:
    """Random draws shared by all views of one sample (scale, flip, colour)."""

    scale: float = 1.0
    flip: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0


def draw_params(rng: np.random.Generator, s: AugmentSettings) -> SampleParams:
    """Draw one sample's shared augmentation parameters."""
    lo, hi = s.scale_range
    p = SampleParams(scale=float(rng.uniform(lo, hi)) if hi > lo else lo)
    p.flip = bool(s.flip and rng.random() < 0.5)
    if s.photometric:
        p.brightness = float(rng.uniform(1 - s.brightness, 1 + s.brightness))
        p.contrast = float(rng.uniform(1 - s.contrast, 1 + s.contrast))
        p.saturation = float(rng.uniform(1 - s.saturation, 1 + s.saturation))
    return p


# ---------------------------------------------------------------------------
# Geometry helpers (also used by tests and the multi-view code)
# ---------------------------------------------------------------------------


def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics after centre-aligned resampling by (sx, sy)."""
    out = K.astype(np.float64).copy()
    out[0, :] *= sx
    out[1, :] *= sy
    out[0, 2] = sx * (K[0, 2] + 0.5) - 0.5
    out[1, 2] = sy * (K[1, 2] + 0.5) - 0.5
    return out


def crop_K(K: np.ndarray, oy: int, ox: int) -> np.ndarray:
    """Intrinsics after taking a window whose top-left pixel was (oy, ox)."""
    out = K.astype(np.float64).copy()
    out[0, 2] -= ox
    out[1, 2] -= oy
    return out


def flip_K(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of the horizontally mirrored image: F K M (cx' = width - 1 - cx)."""
    Fm = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return Fm @ K.astype(np.float64) @ MIRROR3


def flip_cam2world(c2w: np.ndarray) -> np.ndarray:
    """Pose in the x-mirrored world seen through the mirrored camera: M4 c2w M4."""
    return MIRROR4 @ c2w @ MIRROR4


def scale_cam2world(c2w: np.ndarray, scale: float) -> np.ndarray:
    """Pose in a world scaled by 1 / scale (translation divided by ``scale``)."""
    out = c2w.astype(np.float64).copy()
    out[:3, 3] /= scale
    return out


def _source_indices(out_len: int, offset: int, scaled_len: int, in_len: int) -> np.ndarray:
    """For output pixels offset..offset+out_len-1 of a row resampled from ``in_len`` to
    ``scaled_len`` pixels, the nearest source pixel (centre-aligned), or -1 outside."""
    pos = np.arange(offset, offset + out_len)
    src = np.floor((pos + 0.5) * (in_len / scaled_len)).astype(np.int64)
    src = np.clip(src, 0, in_len - 1)
    src[(pos < 0) | (pos >= scaled_len)] = -1
    return src


def _window(offset: int, out_len: int, scaled_len: int) -> tuple[int, int, int, int]:
    """(src_start, src_stop, dst_start, dst_stop) of the overlap of a window with a row."""
    s0 = max(offset, 0)
    s1 = min(offset + out_len, scaled_len)
    return s0, s1, s0 - offset, s1 - offset


# ---------------------------------------------------------------------------
# The view transform
# ---------------------------------------------------------------------------


def transform_view(
    view: dict[str, Any],
    out_size: tuple[int, int],
    *,
    scale: float = 1.0,
    offset: tuple[int, int] = (0, 0),
    params: SampleParams | None = None,
) -> dict[str, Any]:
    """Resample one decoded view: scale, window of ``out_size`` at ``offset`` (in the
    scaled image; pads outside), optional flip and colour jitter from ``params``, then
    ImageNet normalisation. Returns the view in the sample format (torch tensors)."""
    params = params or SampleParams(scale=scale)
    image = view["image"]
    h, w = image.shape[:2]
    oh, ow = out_size
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    sy, sx = sh / h, sw / w
    oy, ox = offset
    flip = params.flip

    # RGB: resize whole image, cut the overlapping window, jitter, normalise, paste.
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    if (sh, sw) != (h, w):
        img = F.interpolate(
            img[None], size=(sh, sw), mode="bilinear", align_corners=False,
            antialias=sh < h or sw < w,
        )[0].clamp_(0.0, 1.0)
    ys0, ys1, yd0, yd1 = _window(oy, oh, sh)
    xs0, xs1, xd0, xd1 = _window(ox, ow, sw)
    patch = img[:, ys0:ys1, xs0:xs1]
    patch = _photometric(patch, params)
    patch = (patch - IMAGENET_MEAN) / IMAGENET_STD
    canvas = torch.zeros(3, oh, ow)
    if ys1 > ys0 and xs1 > xs0:
        canvas[:, yd0:yd1, xd0:xd1] = patch
    if flip:
        canvas = canvas.flip(2)

    # Labels: one nearest-neighbour gather for all tasks.
    rows = _source_indices(oh, oy, sh, h)
    cols = _source_indices(ow, ox, sw, w)
    if flip:
        cols = cols[::-1].copy()
    inside = (rows[:, None] >= 0) & (cols[None, :] >= 0)
    r, c = np.maximum(rows, 0), np.maximum(cols, 0)
    labels: dict[str, torch.Tensor] = {
        task: get_task(task).transform_label(label[r[:, None], c[None, :]], inside, params.scale, flip)
        for task, label in view["labels"].items()
    }

    K = crop_K(scale_K(view["K"], sx, sy), oy, ox)
    c2w = scale_cam2world(view["cam2world"], params.scale)
    if flip:
        K = flip_K(K, ow)
        c2w = flip_cam2world(c2w)
    return {
        "image": canvas,
        "labels": labels,
        "has": {t: torch.tensor(bool(v)) for t, v in view["has"].items()},
        "K": torch.from_numpy(K.astype(np.float32)),
        "cam2world": torch.from_numpy(c2w.astype(np.float32)),
        "rel_pose": torch.eye(4),
        "name": view["name"],
    }


def _photometric(img: torch.Tensor, p: SampleParams) -> torch.Tensor:
    """Brightness, contrast and saturation jitter on RGB in [0, 1] (labels untouched)."""
    if p.brightness == 1.0 and p.contrast == 1.0 and p.saturation == 1.0:
        return img
    img = img * p.brightness
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = (img - grey.mean()) * p.contrast + grey.mean()
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
    img = (img - grey) * p.saturation + grey
    return img.clamp_(0.0, 1.0)


def random_offset(rng: np.random.Generator | None, scaled: tuple[int, int], out: tuple[int, int]) -> tuple[int, int]:
    """Window offset: uniform when ``rng`` is given, centred otherwise. When the scaled
    image is smaller than the window the offset is negative (the image lands at a random
    place inside the padded window)."""
    offs = []
    for n, m in zip(scaled, out):
        lo, hi = min(0, n - m), max(0, n - m)
        offs.append(int(rng.integers(lo, hi + 1)) if rng is not None else (n - m) // 2)
    return offs[0], offs[1]


def train_transform(
    view: dict[str, Any], settings: AugmentSettings, params: SampleParams, rng: np.random.Generator | None
) -> dict[str, Any]:
    """Training transform of one view with the sample's shared ``params``: random scale,
    random crop/pad to ``crop_size`` (own offset per view), flip and colour jitter."""
    h, w = view["image"].shape[:2]
    scaled = (max(1, round(h * params.scale)), max(1, round(w * params.scale)))
    offset = random_offset(rng if settings.random_crop else None, scaled, settings.crop_size)
    return transform_view(view, settings.crop_size, scale=params.scale, offset=offset, params=params)


def val_transform(view: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Validation transform: pad bottom/right to ``size`` with ignore values, K unchanged."""
    h, w = view["image"].shape[:2]
    if h > size[0] or w > size[1]:
        raise UserError(
            f"validation image {view['name']} is {h}x{w}, larger than data.val_size "
            f"{size[0]}x{size[1]}; raise data.val_size"
        )
    return transform_view(view, size)


def round_up(size: tuple[int, int], multiple: int = 32) -> tuple[int, int]:
    """Each side rounded up to a multiple of ``multiple``."""
    return tuple(int(math.ceil(s / multiple) * multiple) for s in size)  # type: ignore[return-value]
