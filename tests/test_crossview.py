"""The cross-view module: plane-sweep geometry, cost volume, windows, neighbours, shapes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import CvmConfig
from mtlsearch.errors import UserError
from mtlsearch.models.crossview import (
    COST_CHANNELS,
    CrossViewModule,
    MultiViewTransformer,
    SpatialEncoder,
    camera_centres,
    cost_volume,
    count_parameters,
    inverse_depth_planes,
    nearest_views,
    scale_intrinsics,
)

SMALL = {"width": 32, "layers": 2, "heads": 2, "depth_planes": 16, "chunk_planes": 5}


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]],
         "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
         "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]]}[axis]
    out = np.eye(4)
    out[:3, :3] = m
    return out


def _pose(R: np.ndarray, centre: list[float]) -> np.ndarray:
    """Source-from-reference pose of a camera with rotation R (4x4) and centre in the ref frame."""
    out = R.copy()
    out[:3, 3] = -R[:3, :3] @ np.asarray(centre, dtype=float)
    return out


# ---------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------


def test_inverse_depth_planes_hand_values():
    d = inverse_depth_planes(1.0, 4.0, 3)
    assert torch.allclose(d, torch.tensor([1.0, 1.6, 4.0]))
    d = inverse_depth_planes(0.5, 10.0, 128)
    steps = (1 / d).diff()
    assert d[0] == pytest.approx(0.5) and d[-1] == pytest.approx(10.0)
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-5)
    with pytest.raises(UserError, match="cvm.near"):
        inverse_depth_planes(2.0, 1.0, 4)


def test_scale_intrinsics_half_pixel_rule():
    K = torch.tensor([[80.0, 0.0, 35.5], [0.0, 60.0, 27.5], [0.0, 0.0, 1.0]])
    Kp = scale_intrinsics(K, 8)  # pooled: feature j centred on input u = 8 j + 3.5
    assert torch.allclose(Kp, torch.tensor([[10.0, 0, 4.0], [0, 7.5, 3.0], [0, 0, 1]]))
    Kc = scale_intrinsics(K, 8, offset=0.0)  # strided convs: centred on u = 8 j
    assert torch.allclose(Kc, torch.tensor([[10.0, 0, 35.5 / 8], [0, 7.5, 27.5 / 8], [0, 0, 1]]))
    # A point's feature coordinate j and pixel coordinate u satisfy u = 8 j + 3.5.
    X = torch.randn(3, 50) + torch.tensor([[0.0], [0.0], [4.0]])
    u, j = K @ X, Kp @ X
    assert torch.allclose(u[:2] / u[2], 8 * j[:2] / j[2] + 3.5, atol=1e-4)
    # ...which is where 8x8 average pooling puts the centre of a coordinate ramp.
    ramp = torch.arange(64.0).expand(1, 1, 8, 64)
    assert torch.allclose(F.avg_pool2d(ramp, 8)[0, 0, 0], 8 * torch.arange(8.0) + 3.5)


def test_encoder_receptive_field_centred_on_8j():
    """Strided same-padded convs centre feature j on input pixel 8 j (ENCODER_OFFSET = 0)."""
    torch.manual_seed(0)
    enc = SpatialEncoder(width=8)
    for mod in list(enc.modules()):  # InstanceNorm couples all pixels: drop it
        for child, sub in list(mod.named_children()):
            if isinstance(sub, nn.InstanceNorm2d):
                setattr(mod, child, nn.Identity())
    with torch.no_grad():
        for p in enc.parameters():
            p.abs_()  # positive weights and input: every ReLU active, exact support
    x = torch.rand(1, 3, 176, 176, requires_grad=True)
    feat = enc(x)
    assert feat.shape[-2:] == (22, 22)
    feat[0, :, 10, 11].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = support.any(1).nonzero().squeeze(1)
    cols = support.any(0).nonzero().squeeze(1)
    assert (rows[0] + rows[-1]).item() / 2 == 80  # 8 * 10
    assert (cols[0] + cols[-1]).item() / 2 == 88  # 8 * 11
    assert rows[-1] - rows[0] + 1 == 107  # the encoder's receptive field


def test_camera_centres_and_nearest_views_hand_made():
    poses = [
        _pose(_rot("y", 30), [1.0, 0.0, 0.0]),
        _pose(_rot("x", -20) @ _rot("z", 45), [5.0, 0.0, 0.0]),
        _pose(_rot("y", -10), [1.5, 0.0, 0.0]),
    ]
    rel = torch.tensor(np.stack(poses), dtype=torch.float32)[None]
    centres = camera_centres(rel)
    expect = torch.tensor([[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [1.5, 0, 0]])
    assert torch.allclose(centres[0], expect, atol=1e-5)
    nbr = nearest_views(rel)
    assert nbr[0].tolist() == [[1, 3], [3, 0], [3, 1], [1, 0]]
    assert nearest_views(rel[:, :2]).shape == (1, 3, 2)  # V = 3: all other views
    assert nearest_views(rel[:, :1])[0].tolist() == [[1], [0]]


# ---------------------------------------------------------------------------
# Cost volume
# ---------------------------------------------------------------------------


def _random_setup(C: int = 8, h: int = 6, w: int = 7, N: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(1, C, h, w, generator=g)
    src = torch.randn(1, N, C, h, w, generator=g)
    K = torch.tensor([[6.0, 0, 3.0], [0, 6.0, 2.5], [0, 0, 1]])
    poses = [_pose(_rot("y", 4 * (n + 1)), [0.3 * (n + 1), 0.05, 0.0]) for n in range(N)]
    rel = torch.tensor(np.stack(poses), dtype=torch.float32)[None]
    return ref, src, K[None], K.expand(1, N, 3, 3), rel


def test_cost_volume_hand_computed_translation():
    """Source camera shifted by b along x: a reference pixel u at depth d lands on
    u - f b / d in the source. With ref = 1 and src = u + 1 (C = 1) the volume is
    that coordinate + 1, or 0 outside the source image."""
    h, w, f, b = 3, 12, 4.0, 0.5
    K = torch.tensor([[[f, 0, 5.0], [0, f, 1.0], [0, 0, 1]]])
    ref = torch.ones(1, 1, h, w)
    src = (torch.arange(w, dtype=torch.float32) + 1).expand(1, 1, 1, h, w)
    rel = torch.tensor(_pose(np.eye(4), [b, 0.0, 0.0]), dtype=torch.float32)[None, None]
    depths = torch.tensor([1.0, 2.0, 4.0])
    cv = cost_volume(ref, src, K, K[:, None], rel, depths, chunk=2)
    assert cv.shape == (1, 3, h, w)
    u = 8
    assert cv[0, :, 1, u].tolist() == pytest.approx([u - 2 + 1, u - 1 + 1, u - 0.5 + 1])
    assert cv[0, 0, :, 1].tolist() == pytest.approx([0.0] * h)  # lands on u = -1: outside
    assert cv[0, 2, 2, 0].item() == pytest.approx(0.5 * 1.0)  # u = -0.5: half weight


def test_cost_volume_chunk_size_independent_values_and_grads():
    ref, src, K, Ks, rel = _random_setup()
    depths = inverse_depth_planes(0.5, 10.0, 10)
    outs, grads = [], []
    for chunk in (1, 3, 10, 64):
        r = ref.clone().requires_grad_(True)
        s = src.clone().requires_grad_(True)
        cv = cost_volume(r, s, K, Ks, rel, depths, chunk)
        (cv * torch.linspace(-1, 1, cv.numel()).view_as(cv)).sum().backward()
        outs.append(cv.detach())
        grads.append((r.grad, s.grad))
    for cv, (gr, gs) in zip(outs[1:], grads[1:]):
        assert torch.allclose(cv, outs[0], atol=1e-5)
        assert torch.allclose(gr, grads[0][0], atol=1e-5)
        assert torch.allclose(gs, grads[0][1], atol=1e-5)
    assert outs[0].abs().sum() > 0


def test_cost_volume_identity_pose_is_constant_over_planes():
    ref, _, K, _, _ = _random_setup(N=1)
    rel = torch.eye(4)[None, None]
    cv = cost_volume(ref, ref[:, None], K, K[:, None], rel, inverse_depth_planes(0.5, 10, 12), 5)
    self_corr = (ref * ref).sum(1) / math.sqrt(ref.shape[1])
    assert torch.allclose(cv, self_corr[:, None].expand_as(cv), atol=1e-4)


# ---------------------------------------------------------------------------
# Geometry: the plane of maximum correlation is the true depth's plane
# ---------------------------------------------------------------------------

NEAR, FAR, PLANES = 0.5, 10.0, 32
ROOM_LO, ROOM_HI = np.array([-2.0, -1.5, -1.0]), np.array([2.0, 1.5, 5.0])


def _render_room(K: np.ndarray, c2w: np.ndarray, H: int, W: int, table: np.ndarray):
    """Ray-cast the inside of a box room whose faces carry bilinear value noise
    (6 cm cells); returns an RGB image (H, W, 3) in [0, 1] and z-depth (H, W)."""
    v, u = np.mgrid[0:H, 0:W]
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(H * W)])
    origin = c2w[:3, 3]
    d = (c2w[:3, :3] @ rays).T
    with np.errstate(divide="ignore", invalid="ignore"):
        t_exit = np.where(d > 0, (ROOM_HI - origin) / d,
                          np.where(d < 0, (ROOM_LO - origin) / d, np.inf))
    axis = t_exit.argmin(1)
    t = t_exit[np.arange(len(d)), axis]  # = z-depth, since rays have camera z = 1
    face = axis * 2 + (d[np.arange(len(d)), axis] > 0)
    p = origin + t[:, None] * d
    colour = np.zeros((len(d), 3))
    n = table.shape[1]
    for fc in range(6):
        sel = face == fc
        uv = p[sel][:, [a for a in range(3) if a != fc // 2]] / 0.06
        i0 = np.floor(uv).astype(int)
        fr = uv - i0
        for dx in (0, 1):
            for dy in (0, 1):
                wgt = (fr[:, 0] if dx else 1 - fr[:, 0]) * (fr[:, 1] if dy else 1 - fr[:, 1])
                colour[sel] += wgt[:, None] * table[fc, (i0[:, 0] + dx) % n, (i0[:, 1] + dy) % n]
    return colour.reshape(H, W, 3), t.reshape(H, W)


def _camera(position: list[float], yaw_deg: float) -> np.ndarray:
    c2w = _rot("y", yaw_deg)
    c2w[:3, 3] = position
    return c2w


def _colour_features(img: np.ndarray, radius: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-resolution patch descriptors: each pixel's (2r+1)^2 RGB patch of the 2x2
    average-pooled image, mean-removed and L2-normalised (correlation = NCC)."""
    x = F.avg_pool2d(torch.as_tensor(img, dtype=torch.float32).permute(2, 0, 1)[None], 2)
    p = F.unfold(x, 2 * radius + 1, padding=radius)
    p = p.view(1, 3, -1, p.shape[-1])
    p = F.normalize((p - p.mean(2, keepdim=True)).flatten(1, 2), dim=1)
    return p.view(1, -1, *x.shape[2:]), x


def _plane_hit_counts(img_r, img_s, depth_r, depth_s, K, rel, perturbations):
    """Hits (evaluated pixels whose argmax plane is within +-1 of the plane nearest, in
    inverse depth, to the true depth) for the right pose and each perturbed pose, and
    the number of evaluated pixels."""
    # Evaluated pixels (half resolution): gradient magnitude above the median, true depth

    # in [NEAR, FAR] and smooth (2x2 block max/min < 1.05), and co-visible (projects at
    # least 2 pixels inside the source image, where the source depth agrees within 5 %).
    fr, xr = _colour_features(img_r)
    fs, _ = _colour_features(img_s)
    h, w = fr.shape[2:]
    Kh = scale_intrinsics(torch.as_tensor(K, dtype=torch.float32), 2)  # pooled: half-pixel rule
    depths = inverse_depth_planes(NEAR, FAR, PLANES)
    dr = torch.as_tensor(depth_r, dtype=torch.float32)[None, None]
    d_true = F.avg_pool2d(dr, 2)[0, 0]
    smooth = F.max_pool2d(dr, 2)[0, 0] < 1.05 * -F.max_pool2d(-dr, 2)[0, 0]
    nearest = (1 / d_true[None] - 1 / depths[:, None, None]).abs().argmin(0)
    g = xr.mean(1)[0]
    grad = torch.zeros_like(g)
    grad[1:-1, 1:-1] = ((g[1:-1, 2:] - g[1:-1, :-2]) ** 2 + (g[2:, 1:-1] - g[:-2, 1:-1]) ** 2).sqrt()
    v, u = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)]).float().view(3, -1)
    rel_t = torch.as_tensor(rel, dtype=torch.float32)
    q = Kh @ (rel_t[:3, :3] @ (torch.linalg.inv(Kh) @ pix * d_true.view(1, -1)) + rel_t[:3, 3:])
    z = q[2].clamp_min(1e-6)
    us, vs = q[0] / z, q[1] / z
    inside = (q[2] > 0) & (us >= 2) & (us <= w - 3) & (vs >= 2) & (vs <= h - 3)
    # source depth at the projection (full-resolution pixel 2 j + 0.5 -> nearest)
    ui = (2 * us + 0.5).round().clamp(0, depth_s.shape[1] - 1).long()
    vi = (2 * vs + 0.5).round().clamp(0, depth_s.shape[0] - 1).long()
    ds = torch.as_tensor(depth_s, dtype=torch.float32)[vi, ui]
    covisible = inside & ((q[2] - ds).abs() < 0.05 * ds)
    mask = (covisible.view(h, w) & (grad > grad[grad > 0].median()) & smooth
            & (d_true > NEAR) & (d_true < FAR))
    assert mask.sum() > 200, "too few evaluable pixels for a meaningful fraction"
    hits = {}
    for name, delta in perturbations.items():
        pose = torch.as_tensor(delta @ rel, dtype=torch.float32)
        cv = cost_volume(fr, fs[:, None], Kh[None], Kh[None, None], pose[None, None], depths, 8)
        hits[name] = (((cv[0].argmax(0) - nearest).abs() <= 1) & mask).sum().item()
    return hits, mask.sum().item()


def _fractions(counts: list[tuple[dict[str, int], int]]) -> dict[str, float]:
    """Hit fractions pooled over view pairs."""
    total = sum(n for _, n in counts)
    return {name: sum(h[name] for h, _ in counts) / total for name in counts[0][0]}


def _wrong_poses() -> dict[str, np.ndarray]:
    """Left-multiplied pose errors: 20 cm along the source camera's x axis and 5 degrees
    about its y axis."""
    shift = np.eye(4)
    shift[0, 3] = 0.2
    return {"right": np.eye(4), "t+20cm": shift, "rot5deg": _rot("y", 5.0)}


def _check_fractions(frac: dict[str, float]) -> None:
    assert frac["right"] > 0.6, frac
    assert frac["t+20cm"] < 0.5 * frac["right"], frac
    assert frac["rot5deg"] < 0.5 * frac["right"], frac


def test_geometry_analytic_room_argmax_plane_matches_depth():
    rng = np.random.default_rng(0)
    table = rng.random((6, 97, 97, 3))
    H, W = 96, 128
    K = np.array([[0.9 * W, 0, (W - 1) / 2], [0, 0.9 * W, (H - 1) / 2], [0, 0, 1.0]])
    c2w_r, c2w_s = _camera([0.1, 0.2, 0.0], 6.0), _camera([0.4, 0.1, 0.05], 0.0)
    img_r, dep_r = _render_room(K, c2w_r, H, W, table)
    img_s, dep_s = _render_room(K, c2w_s, H, W, table)
    rel = np.linalg.inv(c2w_s) @ c2w_r
    counts = _plane_hit_counts(img_r, img_s, dep_r, dep_s, K, rel, _wrong_poses())
    print("analytic room plane-hit fractions:", _fractions([counts]))
    _check_fractions(_fractions([counts]))


def test_geometry_synthrooms_argmax_plane_matches_depth(tmp_path):
    """Pooled over the three pairs of a generated 3-view SynthRooms scene (single pairs
    range from about 0.5 to 0.95 over scenes: low-texture walls, occlusions)."""
    synthrooms = pytest.importorskip("mtlsearch.data.synthrooms")
    from PIL import Image

    root = tmp_path / "sr"
    synthrooms.generate(root, scenes=1, views=3, size=(120, 160), seed=1, val_fraction=0.0,
                        workers=1, force=True, progress=False)
    ids = [line for line in (root / "gt_sets" / "train.txt").read_text().split() if line]
    assert len(ids) == 3
    views = []
    for vid in ids:
        img = np.asarray(Image.open(root / "images" / f"{vid}.png").convert("RGB")) / 255.0
        cam = json.loads((root / "cameras" / f"{vid}.json").read_text())
        views.append((img, np.load(root / "depth" / f"{vid}.npy"),
                      np.asarray(cam["K"], dtype=float), np.asarray(cam["cam2world"], dtype=float)))
    counts = []
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        (img_r, dep_r, K, c2w_r), (img_s, dep_s, _, c2w_s) = views[a], views[b]
        rel = np.linalg.inv(c2w_s) @ c2w_r
        counts.append(_plane_hit_counts(img_r, img_s, dep_r, dep_s, K, rel, _wrong_poses()))
        print(f"synthrooms views {a}->{b} plane-hit fractions:", _fractions(counts[-1:]))
    frac = _fractions(counts)
    print("synthrooms pooled plane-hit fractions:", frac)
    _check_fractions(frac)


# ---------------------------------------------------------------------------
# Transformer windows
# ---------------------------------------------------------------------------


def test_windows_local_and_shifted_without_wraparound():
    torch.manual_seed(0)
    feats = torch.randn(1, 2, 16, 8, 8)
    nbr = torch.tensor([[[1], [0]]])
    bumped = feats.clone()
    bumped[0, 0, :, 1, 1] += 5.0
    with torch.no_grad():
        one = MultiViewTransformer(16, layers=1, heads=2, splits=2)
        changed = (one(bumped, nbr) - one(feats, nbr)).abs().sum(2)[0] > 1e-5
        assert changed[:, :4, :4].all()  # both views: self and cross attention in window 0
        assert not changed[:, 4:, :].any() and not changed[:, :, 4:].any()
        two = MultiViewTransformer(16, layers=2, heads=2, splits=2)
        changed = (two(bumped, nbr) - two(feats, nbr)).abs().sum(2)[0] > 1e-5
        assert changed[0, 5, 5]  # reached through the shifted window [2:6, 2:6]
        assert not changed[0, 7, 7]  # the roll wraps row/col 7 next to 0: masked


# ---------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------


def _inputs(S: int, B: int = 2, H: int = 56, W: int = 72, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(B, 3, H, W, generator=g)
    src = torch.randn(B, S, 3, H, W, generator=g)
    K = torch.tensor([[60.0, 0, 35.5], [0, 60.0, 27.5], [0, 0, 1]]).expand(B, 3, 3)
    poses = [_pose(_rot("y", 3 * (s + 1)), [0.2 * (s + 1) ** 2, 0.0, 0.0]) for s in range(S)]
    rel = torch.tensor(np.stack(poses), dtype=torch.float32).expand(B, S, 4, 4)
    return image, src, K, K[:, None].expand(B, S, 3, 3), rel


@pytest.mark.parametrize("views", [2, 3, 4])
def test_module_output_shapes(views):
    m = CrossViewModule(CvmConfig(**SMALL))
    assert m.out_channels == COST_CHANNELS + 32
    image, src, K, src_K, rel = _inputs(views - 1)
    with torch.no_grad():
        out = m.forward_all(image, src, K, src_K, rel)
    assert out["out"].shape == (2, m.out_channels, 7, 9)
    assert out["cost_volume"].shape == (2, 16, 7, 9)
    assert out["features"].shape == (2, views, 32, 7, 9)
    assert out["neighbours"].shape == (2, views, min(2, views - 1))
    assert ((out["depth"] >= 0.5 - 1e-4) & (out["depth"] <= 10 + 1e-3)).all()


def test_far_view_that_nobody_attends_to_has_no_influence():
    """V = 4 with sources at x = 0.2, 0.8, 1.8 m: nobody's 2 nearest include the last one."""
    m = CrossViewModule(CvmConfig(**SMALL)).eval()
    image, src, K, src_K, rel = _inputs(3, B=1)
    other = src.clone()
    other[:, 2] = torch.randn_like(other[:, 2])
    with torch.no_grad():
        a = m.forward_all(image, src, K, src_K, rel)
        b = m(image, other, K, src_K, rel)
        c = m(image, src.flip(1), K, src_K, rel)  # a changed neighbour does matter
    assert a["neighbours"][0].tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    assert torch.allclose(a["out"], b, atol=1e-5)
    assert not torch.allclose(a["out"], c, atol=1e-3)


def test_single_view_duplicates_with_identity_pose():
    m = CrossViewModule(CvmConfig(**SMALL)).eval()
    image = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        out = m.forward_all(image)
    cv = out["cost_volume"]
    assert out["out"].shape == (1, m.out_channels, 6, 8)
    assert torch.allclose(cv, cv[:, :1].expand_as(cv), atol=1e-3)  # no geometry in it


def test_switches_and_out_channels():
    assert CrossViewModule(CvmConfig(**{**SMALL, "use_features": False})).out_channels == 64
    feats_only = CrossViewModule(CvmConfig(**{**SMALL, "use_cost_volume": False}))
    assert feats_only.out_channels == 32
    image, src, K, src_K, rel = _inputs(1, B=1, H=32, W=32)
    assert feats_only(image, src, K, src_K, rel).shape == (1, 32, 4, 4)
    with pytest.raises(UserError, match="cvm.use_cost_volume and cvm.use_features"):
        CrossViewModule(CvmConfig(use_cost_volume=False, use_features=False))
    with pytest.raises(UserError, match="cvm.width"):
        CrossViewModule(CvmConfig(width=30, heads=4))


def test_out_channels_do_not_depend_on_planes_and_parameter_count():
    full = [CrossViewModule(CvmConfig(depth_planes=n)) for n in (32, 512)]
    assert full[0].out_channels == full[1].out_channels == 64 + 128
    n = count_parameters(CrossViewModule(CvmConfig()))
    assert 4.0e6 < n < 5.5e6, n  # "about 5M extra parameters" at width 128, 6 layers


def test_gradients_reach_every_parameter_and_the_images():
    m = CrossViewModule(CvmConfig(**SMALL))
    image, src, K, src_K, rel = _inputs(1, B=1, H=32, W=48)
    image.requires_grad_(True)
    src.requires_grad_(True)
    out = m(image, src, K, src_K, rel)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert image.grad.abs().sum() > 0 and src.grad.abs().sum() > 0
