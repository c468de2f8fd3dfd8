"""The 3D-aware regularizer: compositing math, tri-plane sampling, chunking, poses, alpha."""

from __future__ import annotations

import math

import pytest
import torch

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import TriplaneRegularizer, alpha_at, build_model, composite_weights


def _reg_cfg(**kw):
    base = {"regularizer.enabled": True, "regularizer.triplane_width": 2, "regularizer.hidden": 2}
    base.update({f"regularizer.{k}": v for k, v in kw.items()})
    return load_config(None, base).regularizer


def _probe(sigma: float, **kw) -> TriplaneRegularizer:
    """A depth-only regularizer whose field returns feature channel 0 with constant density
    ``sigma`` (softplus activation): render = f0 composited with those weights."""
    reg = TriplaneRegularizer(4, {"depth": 1}, _reg_cfg(**kw))
    first, second = reg.fields["depth"][0], reg.fields["depth"][2]
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        first.bias.copy_(torch.tensor([10.0, 0.0]))  # keeps LeakyReLU in its linear part
        second.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
        inv = sigma if sigma > 30 else math.log(math.expm1(sigma))  # inverse softplus
        second.bias.copy_(torch.tensor([inv, -10.0]))
    return reg.eval()


def _ramp_planes(h: int, w: int, xy=(1.0, 0.0), xz=(0.0, 0.0), yz=(0.0, 0.0)):
    """Planes with 2 channels holding a * (width coordinate) + b * (height coordinate),
    coordinates on the align_corners=True grid (so bilinear sampling is exact)."""
    v = torch.linspace(-1, 1, h).view(h, 1).expand(h, w)
    u = torch.linspace(-1, 1, w).view(1, w).expand(h, w)

    def plane(a, b):
        ch = a * u + b * v
        return torch.stack([ch, torch.zeros_like(ch)]).unsqueeze(0)

    return plane(*xy), plane(*xz), plane(*yz)


def test_composite_weights_hand_computed():
    sigma = torch.tensor([0.5, 2.0, 1.0])
    d = 0.4
    a = [1 - math.exp(-s * d) for s in sigma.tolist()]
    expected = [a[0], (1 - a[0]) * a[1], (1 - a[0]) * (1 - a[1]) * a[2]]
    assert torch.allclose(composite_weights(sigma, d), torch.tensor(expected), atol=1e-6)


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_constant_density_weights_sum_to_one_minus_transmittance(sigma):
    # Constant density over the ray length L = far - near: total weight 1 - exp(-sigma L).
    reg = _probe(sigma, near=-1.0, far=1.0, samples_per_ray=16, align_corners=True)
    planes = tuple(torch.full((1, 2, 5, 5), 0.0) for _ in range(3))
    planes[0][:, 0] = 1.0  # f0 = 1 everywhere inside the box
    out = reg.render(planes, (40, 40))["depth"]
    assert out.shape == (1, 1, 5, 5)
    assert torch.allclose(out, torch.full_like(out, 1 - math.exp(-sigma * 2.0)), atol=1e-5)


def test_triplane_sum_aggregation_and_plane_axes():
    reg = TriplaneRegularizer(4, {"depth": 1}, _reg_cfg(align_corners=True))
    # e_xy = x (width axis), e_xz = 10 z (height axis), e_yz = 100 y (height axis).
    planes = _ramp_planes(9, 7, xy=(1.0, 0.0), xz=(0.0, 10.0), yz=(0.0, 100.0))
    pts = torch.rand(1, 20, 3, 3) * 2 - 1
    feats = reg.query(planes, pts)
    x, y, z = pts.unbind(-1)
    assert torch.allclose(feats[..., 0], x + 10 * z + 100 * y, atol=1e-4)
    assert torch.allclose(feats[..., 1], torch.zeros_like(x))


def test_chunked_rendering_equals_unchunked():
    torch.manual_seed(0)
    reg = TriplaneRegularizer(8, {"semseg": 5, "normals": 3, "depth": 1}, _reg_cfg(hidden=8))
    reg.eval()
    f = torch.randn(2, 8, 12, 16)
    planes = reg.encode(f)
    reg.cfg = reg.cfg.model_copy(update={"chunk_rays": 100_000})
    whole = reg.render(planes, (48, 64))
    reg.cfg = reg.cfg.model_copy(update={"chunk_rays": 7})
    chunked = reg.render(planes, (48, 64))
    for task in whole:
        assert whole[task].shape == chunked[task].shape
        assert torch.allclose(whole[task], chunked[task], atol=1e-6)
    assert torch.allclose(whole["normals"].norm(dim=1), torch.ones(2, 6, 8))


def test_render_size_and_shared_density():
    reg = TriplaneRegularizer(8, {"semseg": 12, "edge": 1}, _reg_cfg(shared_density=True))
    out = reg(torch.randn(1, 8, 112, 144), (448, 576))
    assert out["semseg"].shape == (1, 12, 56, 72) and out["edge"].shape == (1, 1, 56, 72)
    assert reg.density is not None and reg.fields["edge"][2].out_features == 1


def test_renders_only_the_chosen_subset():
    cfg = load_config(
        None,
        {
            "regularizer.enabled": True,
            "regularizer.tasks": ["depth", "edge"],
            "model.decoder_width": 16,
            "regularizer.triplane_width": 8,
        },
    )
    model = build_model(cfg).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out["renders"]) == {"depth", "edge"}
    assert set(out["heads"]) == {"semseg", "depth", "normals", "edge"}
    assert out["renders"]["depth"].shape == (2, 1, 8, 8)
    model.eval()
    assert "renders" not in model(torch.randn(1, 3, 64, 64))
    assert set(model(torch.randn(1, 3, 64, 64), render=True)["renders"]) == {"depth", "edge"}


def test_orthographic_mode_refuses_cross_view_renders():
    reg = _probe(1.0, align_corners=True)
    planes = _ramp_planes(17, 17, xy=(1.0, 0.0))
    with pytest.raises(UserError, match="ray_mode: perspective"):
        reg.render(planes, (72, 72), torch.eye(4).unsqueeze(0))
    with pytest.raises(UserError, match="ray_mode.*perspective"):
        load_config(None, {"regularizer.enabled": True, "regularizer.cross_view.enabled": True})


def test_expected_depth_mode_in_metres():
    dense = _probe(1000.0, depth_mode="expected", samples_per_ray=64)
    empty = TriplaneRegularizer(4, {"depth": 1}, _reg_cfg(depth_mode="expected", density_activation="relu"))
    with torch.no_grad():
        empty.fields["depth"][2].bias.fill_(-1e3)
        empty.fields["depth"][2].weight.zero_()
    planes = tuple(torch.zeros(1, 2, 4, 4) for _ in range(3))
    # Opaque at the first sample: depth = first sample's metric depth (5 + 5 * (-1 + 1/64)).
    near = dense.render(planes, (16, 16))["depth"]
    assert torch.allclose(near, torch.full_like(near, 5 + 5 * (-1 + 1 / 64)), atol=1e-3)
    # Empty box: all transmittance reaches the far plane, 5 + 5 * 1 = 10 m.
    far = empty.eval().render(planes, (16, 16))["depth"]
    assert torch.allclose(far, torch.full_like(far, 10.0))


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("linear_ramp", 0, 0.0),
        ("linear_ramp", 25, 2.0),
        ("linear_ramp", 50, 4.0),
        ("linear_ramp", 99, 4.0),
        ("cosine_ramp", 25, 2.0),
        ("cosine_ramp", 12.5, 2.0 * (1 - math.cos(math.pi / 4))),
        ("cosine_ramp", 80, 4.0),
        ("step", 49, 0.0),
        ("step", 50, 4.0),
        ("constant", 0, 4.0),
    ],
)
def test_alpha_schedules(schedule, step, expected):
    cfg = load_config(
        None,
        {
            "train.iterations": 100,
            "regularizer.alpha.schedule": schedule,
            "regularizer.alpha.max": 4.0,
            "regularizer.alpha.ramp_fraction": 0.5,
        },
    )
    assert alpha_at(step, cfg) == pytest.approx(expected)


def test_alpha_zero_ramp_is_max_from_start():
    cfg = load_config(None, {"regularizer.alpha.ramp_fraction": 0.0, "regularizer.alpha.max": 3.0})
    assert alpha_at(0, cfg) == 3.0


def _persp(**kw) -> TriplaneRegularizer:
    torch.manual_seed(0)
    cfg = _reg_cfg(ray_mode="perspective", depth_mode="expected", hidden=8, **kw)
    return TriplaneRegularizer(8, {"depth": 1, "normals": 3, "semseg": 4}, cfg).eval()


def test_perspective_identity_pose_and_chunks() -> None:
    K = torch.tensor([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    for box in ("camera", "frustum"):
        reg = _persp(perspective_box=box)
        planes = reg.encode(torch.randn(2, 8, 12, 16))
        plain = reg.render(planes, (48, 64), K=K)
        same = reg.render(planes, (48, 64), torch.eye(4).expand(2, 4, 4), K=K)
        reg.cfg = reg.cfg.model_copy(update={"chunk_rays": 5})
        chunked = reg.render(planes, (48, 64), K=K)
        for task in plain:
            assert plain[task].shape[-2:] == (6, 8)
            assert torch.allclose(plain[task], same[task], atol=1e-5)
            assert torch.allclose(plain[task], chunked[task], atol=1e-5)
        near, far = reg.metric_depth_range()
        assert ((plain["depth"] > near) & (plain["depth"] <= far + 1e-4)).all()
    with pytest.raises(ValueError, match="needs the view's intrinsics K"):
        reg.render(planes, (48, 64))


def test_frustum_box_aligns_the_xy_plane_with_pixels() -> None:
    reg = _persp(perspective_box="frustum")
    K = torch.tensor([[[40.0, 0.0, 15.5], [0.0, 40.0, 11.5], [0.0, 0.0, 1.0]]])
    # the centre of pixel (u, v) = (3, 7) at two depths: same (x, y) box coordinates
    ray = torch.linalg.inv(K[0]) @ torch.tensor([3.0, 7.0, 1.0])
    points = torch.stack([ray * 1.5, ray * 6.0]).view(1, 1, 2, 3)
    box = reg.to_box(points, K, (24, 32))
    assert torch.allclose(box[0, 0, :, 0], torch.full((2,), 2 * 3.5 / 32 - 1), atol=1e-5)
    assert torch.allclose(box[0, 0, :, 1], torch.full((2,), 2 * 7.5 / 24 - 1), atol=1e-5)
    near, far = reg.metric_depth_range()
    assert torch.allclose(box[0, 0, :, 2], torch.tensor([1.5, 6.0]).sub(near).div(far - near).mul(2).sub(1))
