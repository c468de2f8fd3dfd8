"""The multi-task model: registries, backbones, pretrained loading, export, losses, training."""

from __future__ import annotations

import sys
import types

import pytest
import timm
import torch
from torch import nn

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import (
    DECODERS,
    build_backbone,
    build_model,
    compute_losses,
    count_parameters,
    list_decoders,
)
from mtlsearch.tasks import IGNORE

SMALL = {"model.decoder_width": 16, "regularizer.triplane_width": 8, "regularizer.hidden": 16}


def _cfg(**overrides):
    return load_config(None, {**SMALL, **overrides})


INCOMPATIBLE = {  # invpt needs a single-scale ViT, mtinet four levels whose strides double
    ("resnet18", "invpt"), ("hrnet_w18_small", "invpt"), ("vit_tiny_patch16_224", "mtinet"),
}


@pytest.mark.parametrize("decoder", list_decoders())
@pytest.mark.parametrize("backbone", ["resnet18", "hrnet_w18_small", "vit_tiny_patch16_224"])
def test_shapes_over_registry(backbone, decoder):
    cfg = _cfg(**{"model.backbone": backbone, "model.decoder": decoder, "tasks": {
        "semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0, "sal": 5.0, "parts": 2.0}})
    if (backbone, decoder) in INCOMPATIBLE:
        with pytest.raises(UserError, match="model.decoder: .* needs"):
            build_model(cfg)
        return
    model = build_model(cfg, num_classes={"semseg": 21}).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    expected = {"semseg": 21, "depth": 1, "normals": 3, "edge": 1, "sal": 1, "parts": 7}
    assert {t: tuple(v.shape) for t, v in out["heads"].items()} == {
        t: (2, c, 64, 64) for t, c in expected.items()
    }
    assert set(out) == ({"heads", "inter"} if decoder in ("invpt", "mtinet") else {"heads"})


def test_decoder_stride_and_backbone_families():
    assert {"hps", "fpn"} <= set(DECODERS)
    model = build_model(_cfg(**{"model.decoder_stride": 8}))
    feats = model.backbone(torch.randn(1, 3, 64, 96))
    assert model.decoder.features(feats, (64, 96)).shape == (1, 16, 8, 12)
    hr = build_backbone(_cfg(**{"model.backbone": "hrnet_w18_small"}).model)
    assert hr.channels == [16, 32, 64, 128] and hr.reductions == [4, 8, 16, 32]
    vit = build_backbone(_cfg(**{"model.backbone": "vit_tiny_patch16_224"}).model)
    assert vit.channels == [192] * 4 and vit.reductions == [16] * 4
    assert tuple(vit.body.feature_info.out_indices) == (2, 5, 8, 11)  # evenly spaced blocks
    with pytest.raises(UserError, match="out_indices"):
        build_backbone(_cfg(**{"model.out_indices": [7]}).model)


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="model.backbone"):
        build_model(_cfg(**{"model.backbone": "resnet_nope"}))
    with pytest.raises(UserError, match="model.decoder"):
        build_model(_cfg(**{"model.decoder": "nope"}))


def test_pretrained_path_loads_local_file(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)  # full classifier: fc.* is extra
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_model(_cfg(**{"model.pretrained_path": str(path)}))
    got = model.backbone.body.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], source.state_dict()["layer3.1.conv2.weight"])
    assert torch.equal(got["bn1.running_mean"], source.state_dict()["bn1.running_mean"])
    safetensors = pytest.importorskip("safetensors.torch")
    st = tmp_path / "r18.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    model = build_model(_cfg(**{"model.pretrained_path": str(st)}))
    got = model.backbone.body.state_dict()["layer4.0.conv1.weight"]
    assert torch.equal(got, source.state_dict()["layer4.0.conv1.weight"])


def test_pretrained_path_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_model(_cfg(**{"model.pretrained_path": str(tmp_path / "missing.pth")}))
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo.weight": torch.zeros(3)}, wrong)
    with pytest.raises(UserError, match="lacks"):
        build_model(_cfg(**{"model.pretrained_path": str(wrong)}))
    sd = timm.create_model("resnet18", pretrained=False).state_dict()
    sd["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    shaped = tmp_path / "shaped.pth"
    torch.save(sd, shaped)
    with pytest.raises(UserError, match="conv1.weight"):
        build_model(_cfg(**{"model.pretrained_path": str(shaped)}))


def test_export_equals_model_built_without_training_parts():
    torch.manual_seed(0)
    full = build_model(_cfg(**{"regularizer.enabled": True, "aux_heads.enabled": True}))
    exported = full.export()
    assert full.regularizer is not None and full.aux_heads is not None  # original untouched
    assert exported.regularizer is None and exported.aux_heads is None and not exported.training
    plain = build_model(_cfg())
    plain.load_state_dict(exported.state_dict(), strict=True)
    plain.eval()
    assert count_parameters(exported) == count_parameters(plain)
    assert count_parameters(full) > count_parameters(plain)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = exported(image), plain(image)
        c = full.eval()(image)
    assert set(a) == {"heads"} and set(c) == {"heads", "aux"}
    for task in a["heads"]:
        assert torch.allclose(a["heads"][task], b["heads"][task], atol=1e-6)
        assert torch.allclose(a["heads"][task], c["heads"][task], atol=1e-6)
        assert not torch.allclose(c["aux"][task], c["heads"][task])


class _StubCvM(nn.Module):
    """Stands in for the cross-view module: (B, 5, H/8, W/8) from the image and sources."""

    out_channels = 5

    def __init__(self, cfg) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 8, stride=8)

    def forward(self, image, src_images, K, src_K, rel_pose):
        assert src_images is not None and src_images.shape[1] == 1
        return self.conv(image + src_images[:, 0])


def test_cross_view_module_is_concatenated_and_exported(monkeypatch):
    stub = types.ModuleType("mtlsearch.models.crossview")
    stub.CrossViewModule = _StubCvM
    monkeypatch.setitem(sys.modules, "mtlsearch.models.crossview", stub)
    model = build_model(_cfg(**{"cvm.enabled": True, "regularizer.enabled": True}))
    assert model.decoder.out_channels == 16 + 5
    image, src = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 3, 64, 64)
    out = model.train()(image, src_images=src, K=torch.eye(3).expand(2, 3, 3))
    assert out["heads"]["semseg"].shape == (2, 12, 64, 64)
    assert out["renders"]["depth"].shape == (2, 1, 8, 8)
    exported = model.export()
    assert exported.cvm is not None
    assert count_parameters(exported) == count_parameters(model) - count_parameters(model.regularizer)


def _structured_batch(b: int = 2, h: int = 64, w: int = 64, classes: int = 12):
    """Random images with learnable structured labels: class stripes, a depth ramp,
    region normals and stripe boundaries as edges (with some ignored pixels)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(b, 3, h, w, generator=g)
    cols = torch.arange(w).view(1, 1, w).expand(b, h, w)
    rows = torch.arange(h).view(1, h, 1).expand(b, h, w)
    offset = torch.arange(b).view(b, 1, 1) * 5
    semseg = ((cols + offset) // 16) % 4
    semseg[:, :4] = IGNORE
    depth = (1.0 + 3.0 * rows / h + offset / 10).unsqueeze(1).float()
    normals = torch.zeros(b, 3, h, w)
    normals[:, 2] = -1.0
    upper = (rows < h // 2).unsqueeze(1).expand(b, 3, h, w)
    normals[upper] = 0.0
    normals[:, 1][rows < h // 2] = 1.0
    edge = torch.zeros(b, 1, h, w)
    edge[:, 0][((cols + offset) % 16) < 2] = 1.0
    image = image + semseg.clamp(max=3).unsqueeze(1).float() * 0.5
    return image, {"semseg": semseg, "depth": depth, "normals": normals, "edge": edge}


def test_compute_losses_weights_and_keys():
    torch.manual_seed(0)
    cfg = _cfg(**{"regularizer.enabled": True, "aux_heads.enabled": True,
                  "regularizer.cross_view.weight_scale": 0.5, "regularizer.ray_mode": "perspective",
                  "regularizer.depth_mode": "expected"})
    model = build_model(cfg).train()
    image, labels = _structured_batch()
    K = torch.tensor([[60.0, 0.0, 31.5], [0.0, 60.0, 31.5], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    out = model(image, K=K, render_poses=torch.eye(4).expand(2, 4, 4))
    total, parts = compute_losses(out, labels, cfg, alpha=2.0, xview_labels={"depth": labels["depth"]})
    tasks = cfg.task_names
    assert set(parts) == (
        {f"loss_{t}" for t in tasks} | {f"loss_render_{t}" for t in tasks}
        | {f"loss_aux_{t}" for t in tasks} | {"loss_xview_depth"}
    )
    w = cfg.tasks
    expected = sum(w[t] * parts[f"loss_{t}"] for t in tasks)
    expected += 2.0 * sum(w[t] * (parts[f"loss_render_{t}"] + parts[f"loss_aux_{t}"]) for t in tasks)
    expected += 0.5 * 2.0 * w["depth"] * parts["loss_xview_depth"]
    assert torch.allclose(total.detach(), expected, rtol=1e-5)
    assert total.requires_grad


def test_every_task_loss_falls_with_adam():
    torch.manual_seed(0)
    cfg = _cfg(**{"regularizer.enabled": True, "regularizer.samples_per_ray": 16})
    model = build_model(cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    image, labels = _structured_batch(h=48, w=48)
    history: list[dict[str, float]] = []
    for _ in range(30):
        out = model(image)
        total, parts = compute_losses(out, labels, cfg, alpha=1.0)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append({k: float(v) for k, v in parts.items()})
    assert len(history[0]) == 8  # 4 heads + 4 renders
    for key in history[0]:
        start = sum(h[key] for h in history[:3]) / 3
        end = sum(h[key] for h in history[-3:]) / 3
        assert end < 0.8 * start, f"{key}: {start:.4f} -> {end:.4f}"
