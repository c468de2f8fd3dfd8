"""Augmentation: intrinsics bookkeeping, padding values and the geometric consequences
(reprojection between two augmented SynthRooms views, flip mirroring, normals vs depth)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlsearch.data.geometry import backproject, normals_from_depth, project, transform_points
from mtlsearch.data.reader import IGNORE
from mtlsearch.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentSettings,
    SampleParams,
    crop_K,
    flip_K,
    scale_K,
    transform_view,
    val_transform,
)

K0 = np.array([[40.0, 0.0, 19.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]])


def _view(h: int = 32, w: int = 40) -> dict:
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(h, w, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=2, keepdims=True)
    return {
        "image": rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8),
        "labels": {
            "semseg": rng.integers(0, 12, size=(h, w)).astype(np.uint8),
            "depth": rng.uniform(1, 5, size=(h, w)).astype(np.float32),
            "normals": normals,
            "edge": (rng.random((h, w)) > 0.8).astype(np.float32),
            "sal": (rng.random((h, w)) > 0.5).astype(np.float32),
        },
        "has": {t: True for t in ("semseg", "depth", "normals", "edge", "sal")},
        "K": K0.copy(),
        "cam2world": np.eye(4),
        "name": "v",
    }


def test_intrinsics_helpers_by_hand() -> None:
    # Doubling the grid: fx 40 -> 80, cx = 2 * (19.5 + 0.5) - 0.5 = 39.5 (still the centre of 80 px).
    K = scale_K(K0, 2.0, 2.0)
    assert K[0, 0] == 80.0 and K[1, 1] == 80.0
    assert K[0, 2] == pytest.approx(39.5) and K[1, 2] == pytest.approx(31.5)
    K = crop_K(K0, 3, 5)
    assert K[0, 2] == pytest.approx(14.5) and K[1, 2] == pytest.approx(12.5)
    # Flip of a 40-px-wide image: cx' = 39 - 19.5 = 19.5; of cx = 10: 29.
    K = K0.copy()
    K[0, 2] = 10.0
    Kf = flip_K(K, 40)
    assert Kf[0, 2] == pytest.approx(29.0) and Kf[0, 0] == pytest.approx(40.0)
    assert Kf[1, 2] == pytest.approx(15.5)


def test_identity_transform_keeps_values() -> None:
    view = _view()
    out = transform_view(view, (32, 40))
    assert torch.equal(out["labels"]["semseg"], torch.from_numpy(view["labels"]["semseg"].astype(np.int64)))
    assert torch.allclose(out["labels"]["depth"][0], torch.from_numpy(view["labels"]["depth"]))
    rgb = torch.from_numpy(view["image"]).permute(2, 0, 1).float() / 255
    assert torch.allclose(out["image"], (rgb - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)
    assert np.allclose(out["K"].numpy(), K0)


def test_scale_divides_depth_and_pads_with_ignore_values() -> None:
    view = _view()
    out = transform_view(view, (48, 60), scale=0.5, offset=(-4, -6), params=SampleParams(scale=0.5))
    lab = out["labels"]
    # Scaled image is 16 x 20, placed at rows 4..19, cols 6..25 of the 48 x 60 window.
    inside = np.zeros((48, 60), bool)
    inside[4:20, 6:26] = True
    assert (lab["semseg"].numpy()[~inside] == IGNORE).all()
    assert (lab["edge"][0].numpy()[~inside] == IGNORE).all()
    assert (lab["sal"][0].numpy()[~inside] == IGNORE).all()
    assert (lab["depth"][0].numpy()[~inside] == 0).all()
    assert (lab["normals"].numpy()[:, ~inside] == 0).all()
    assert (out["image"].numpy()[:, ~inside] == 0).all()
    # Nearest, centre-aligned: output (4 + i, 6 + j) <- source (2 i + 1, 2 j + 1); depth / 0.5.
    src = view["labels"]["depth"][1::2, 1::2]
    assert np.allclose(lab["depth"][0].numpy()[4:20, 6:26], src * 2.0)
    assert (lab["semseg"].numpy()[4:20, 6:26] == view["labels"]["semseg"][1::2, 1::2]).all()
    K = out["K"].numpy()
    assert K[0, 0] == pytest.approx(20.0) and K[0, 2] == pytest.approx(0.5 * 20 - 0.5 + 6)


def test_flip_negates_normals_x_and_mirrors() -> None:
    view = _view()
    out = transform_view(view, (32, 40), params=SampleParams(flip=True))
    n = out["labels"]["normals"].numpy()
    ref = view["labels"]["normals"][:, ::-1]
    assert np.allclose(n[0], -ref[..., 0]) and np.allclose(n[1:], ref[..., 1:].transpose(2, 0, 1))
    assert (out["labels"]["semseg"].numpy() == view["labels"]["semseg"][:, ::-1]).all()


def test_flip_mirrors_backprojected_points() -> None:
    """Pixel u' of the flipped view back-projects (flipped K) to M @ the point of pixel
    W-1-u' of the original view (M = diag(-1, 1, 1))."""
    view = _view()
    out = transform_view(view, (32, 40), params=SampleParams(flip=True))
    p = backproject(view["labels"]["depth"].astype(np.float64), view["K"])
    pf = backproject(out["labels"]["depth"][0].numpy().astype(np.float64), out["K"].numpy().astype(np.float64))
    mirrored = p[:, ::-1] * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(pf, mirrored, atol=1e-4)


def test_validation_pads_bottom_right() -> None:
    view = _view()
    out = val_transform(view, (64, 64))
    assert out["image"].shape == (3, 64, 64)
    assert (out["labels"]["semseg"][32:] == IGNORE).all() and (out["labels"]["semseg"][:, 40:] == IGNORE).all()
    assert (out["labels"]["depth"][0, :32, :40].numpy() == view["labels"]["depth"]).all()
    assert np.allclose(out["K"].numpy(), K0)


def test_photometric_leaves_labels_alone() -> None:
    view = _view()
    a = transform_view(view, (32, 40))
    b = transform_view(view, (32, 40), params=SampleParams(brightness=1.2, contrast=0.8, saturation=0.7))
    assert not torch.allclose(a["image"], b["image"])
    for task in a["labels"]:
        assert torch.equal(a["labels"][task], b["labels"][task])


# ---------------------------------------------------------------------------
# Two real SynthRooms views
# ---------------------------------------------------------------------------
# Nearest-neighbour resampling of depth moves each label by up to half a source pixel
# relative to the ray its augmented K assigns; at 192 x 256 that stays within the 1 %
# tolerance on >= 95 % of co-visible pixels (measured: about 98 %), while at 48 x 64 it
# does not (about 85 %), so the geometry tests use 192 x 256 views.


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory):
    synthrooms = pytest.importorskip("mtlsearch.data.synthrooms")
    root = tmp_path_factory.mktemp("sr") / "ds"
    synthrooms.generate(root, scenes=1, views=2, size=(192, 256), seed=3, val_fraction=0.0,
                        workers=1, progress=False)
    return root


def _augmented_pair(root, params: SampleParams, offsets, crop=(160, 224)):
    from mtlsearch.data.nyud import NyudReader

    reader = NyudReader(root, "synthrooms")
    ids = reader.split_ids("train")[:2]
    tasks = ["depth", "normals"]
    views = [reader.read_view(i, tasks) for i in ids]
    return [transform_view(v, crop, scale=params.scale, offset=o, params=params)
            for v, o in zip(views, offsets)]


def _agreement(vi: dict, vj: dict, c2w_i=None, c2w_j=None) -> tuple[float, int]:
    """Fraction of co-visible pixels of view i whose reprojected depth matches view j's
    depth within 1 %, and their count."""
    di = vi["labels"]["depth"][0].numpy().astype(np.float64)
    dj = vj["labels"]["depth"][0].numpy().astype(np.float64)
    Ki, Kj = vi["K"].numpy().astype(np.float64), vj["K"].numpy().astype(np.float64)
    c2w_i = vi["cam2world"].numpy().astype(np.float64) if c2w_i is None else c2w_i
    c2w_j = vj["cam2world"].numpy().astype(np.float64) if c2w_j is None else c2w_j
    pts = transform_points(c2w_i, backproject(di, Ki))
    pj = transform_points(np.linalg.inv(c2w_j), pts)
    uv, z = project(pj, Kj)
    valid = di > 0
    h, w = dj.shape
    with np.errstate(invalid="ignore"):
        inside = valid & (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1)
        inside &= (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
    u, v, zz = uv[..., 0][inside], uv[..., 1][inside], z[inside]
    # Bilinear lookup of view j's depth where its four neighbours lie on one surface.
    u0 = np.minimum(np.floor(u).astype(int), w - 2)
    v0 = np.minimum(np.floor(v).astype(int), h - 2)
    a, b = u - u0, v - v0
    quad = np.stack([dj[v0, u0], dj[v0, u0 + 1], dj[v0 + 1, u0], dj[v0 + 1, u0 + 1]])
    smooth = (quad.min(0) > 0) & (quad.max(0) <= 1.05 * quad.min(0))
    target = ((1 - a) * (1 - b) * quad[0] + a * (1 - b) * quad[1]
              + (1 - a) * b * quad[2] + a * b * quad[3])
    ok = np.abs(zz - target)[smooth] <= 0.01 * target[smooth]
    return float(ok.mean()) if ok.size else 0.0, int(ok.size)


@pytest.mark.parametrize("flip", [False, True])
def test_reprojection_holds_after_scale_crop_flip(synth_root, flip: bool) -> None:
    params = SampleParams(scale=1.3, flip=flip)
    vi, vj = _augmented_pair(synth_root, params, offsets=[(5, 9), (14, 3)])
    frac, n = _agreement(vi, vj)
    assert n > 300
    assert frac >= 0.95, frac
    # The bookkeeping matters: keeping the unscaled translation breaks the agreement,
    # and so does forgetting to mirror the world when the views are flipped.
    wrong_i = vi["cam2world"].numpy().astype(np.float64).copy()
    wrong_j = vj["cam2world"].numpy().astype(np.float64).copy()
    wrong_i[:3, 3] *= 1.3
    wrong_j[:3, 3] *= 1.3
    assert _agreement(vi, vj, wrong_i, wrong_j)[0] < 0.8
    if flip:
        m4 = np.diag([-1.0, 1.0, 1.0, 1.0])
        unmirrored_i = m4 @ vi["cam2world"].numpy().astype(np.float64) @ m4
        unmirrored_j = m4 @ vj["cam2world"].numpy().astype(np.float64) @ m4
        assert _agreement(vi, vj, unmirrored_i, unmirrored_j)[0] < 0.8


@pytest.mark.parametrize("flip", [False, True])
def test_normals_match_depth_after_augmentation(synth_root, flip: bool) -> None:
    params = SampleParams(scale=0.8, flip=flip)
    (view,) = _augmented_pair(synth_root, params, offsets=[(-2, -3)])[:1]
    depth = view["labels"]["depth"][0].numpy().astype(np.float64)
    K = view["K"].numpy().astype(np.float64)
    n_depth = normals_from_depth(depth, K)
    n_label = view["labels"]["normals"].numpy().transpose(1, 2, 0).astype(np.float64)
    valid = (np.linalg.norm(n_depth, axis=2) > 0.5) & (np.linalg.norm(n_label, axis=2) > 0.5)
    cos = np.clip((n_depth * n_label).sum(axis=2)[valid], -1, 1)
    angle = np.degrees(np.arccos(cos))
    assert valid.sum() > 500
    assert np.median(angle) < 5.0, np.median(angle)
    if flip:
        # Without negating x the labels would disagree with the flipped geometry.
        wrong = n_label * np.array([-1.0, 1.0, 1.0])
        cos_w = np.clip((n_depth * wrong).sum(axis=2)[valid], -1, 1)
        assert np.median(np.degrees(np.arccos(cos_w))) > 10.0


def test_settings_from_config() -> None:
    from mtlsearch.config import load_config

    cfg = load_config(None, ["data.augment=false"])
    s = AugmentSettings.from_config(cfg.data)
    assert s.scale_range == (1.0, 1.0) and not s.flip and not s.photometric and not s.random_crop
    cfg = load_config(None, ["data.scale_range=[0.5, 2.0]"])
    s = AugmentSettings.from_config(cfg.data)
    assert s.scale_range == (0.5, 2.0) and s.flip and s.random_crop
