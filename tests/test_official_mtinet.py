"""Our MTI-Net computes the official MTI-Net's function (SimonVandenhende/Multi-Task-
Learning-PyTorch), checked against the reference fixture ``tests/fixtures/official/
mtinet_hrnet_w18_nyud.safetensors`` (see the README there): the official random weights,
converted by :mod:`mtlsearch.models.official.mtinet` and loaded strictly, give every
output, deep-supervision prediction, per-task feature map and recorded activation within
the fixture's tolerance. Switching either known difference back (nearest fuse upsampling in
the HRNet; the FPM softmax across tasks, the paper's reading) breaks the match, so the test
can fail. The converter refuses unknown keys, wrong shapes and missing tensors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import build_model
from mtlsearch.models.official.mtinet import convert, official_backbone, official_tasks

FIXTURE = Path(__file__).parent / "fixtures" / "official" / "mtinet_hrnet_w18_nyud.safetensors"
TASKS = {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}  # the official order
SETTINGS = {
    "model.backbone": "hrnet_w18_small_v2",  # the official hrnet_w18.yml
    "model.decoder": "mtinet",
    "data.layout": "nyud",
    "data.root": "unused",
    "tasks": TASKS,
}
TOLERANCE = 1e-4  # the fixture's: max|d| <= 1e-4 * max(1, max|ref|) and ||d|| / ||ref|| <= 1e-4
BROKEN = 1e-2  # relative L2 an architectural difference must exceed
REFERENCE_PREFIXES = ("input.", "output.", "deep.", "act.")


@pytest.fixture(scope="module")
def fixture() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_file(str(FIXTURE))
    torch.set_num_threads(before)


def _official(fixture: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official state_dict: the fixture's keys without a reference prefix."""
    return {k: v for k, v in fixture.items() if not k.startswith(REFERENCE_PREFIXES)}


def _model(fixture: dict[str, torch.Tensor], **overrides: str) -> nn.Module:
    """Our model with the fixture's settings, the official weights loaded strictly."""
    model = build_model(load_config(None, {**SETTINGS, **overrides})).eval()
    conversion = convert(_official(fixture), target=model.state_dict())
    assert conversion.dropped == []
    model.load_state_dict(conversion.state_dict, strict=True)
    return model


def _run(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Our tensors under the fixture's names: outputs, deep supervision (predictions and
    features) and the activations the fixture records (``act.*``), read by forward hooks."""
    got: dict[str, torch.Tensor] = {}
    body, dec = model.backbone.body, model.decoder

    def keep(name: str):
        def hook(module, inputs, out):
            if isinstance(out, dict):
                got.update({f"{name}#{k}": v.clone() for k, v in out.items()})
            elif isinstance(out, (list, tuple)):
                got.update({f"{name}#{i}": v.clone() for i, v in enumerate(out)})
            else:
                got[name] = out.clone()

        return hook

    def features(i: int):
        def hook(module, inputs, out):
            got.update({f"deep.scale_{i}.features_{t}": v.clone() for t, v in out[0].items()})

        return hook

    hooks = [body.transition1[b].register_forward_hook(keep(f"act.backbone.transition1.{b}")) for b in range(2)]
    hooks += [getattr(body, f"stage{s}").register_forward_hook(keep(f"act.backbone.stage{s}")) for s in (2, 3, 4)]
    for i in range(4):
        hooks.append(dec.initial[i].register_forward_hook(features(i)))
        hooks.append(dec.distillation[i].register_forward_hook(keep(f"act.distillation_scale_{i}")))
    for s in (1, 2, 3):
        fpm = dec.propagation[s - 1]
        hooks.append(fpm.register_forward_hook(keep(f"act.fpm_scale_{s}")))
        hooks.append(fpm.masks.register_forward_hook(keep(f"act.fpm_scale_{s}.non_linear")))
        hooks.append(fpm.reduce.register_forward_hook(keep(f"act.fpm_scale_{s}.dimensionality_reduction")))
    hooks += [dec.heads[t].register_forward_hook(keep(f"act.heads.{t}")) for t in TASKS]
    try:
        with torch.no_grad():
            out = model(image)
    finally:
        for h in hooks:
            h.remove()
    got.update({f"output.{t}": v for t, v in out["heads"].items()})
    for i in range(4):
        got.update({f"deep.scale_{i}.{t}": out["inter"][f"{t}@{4 * 2**i}"] for t in TASKS})
    return got


def _errors(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max|ours - ref| / max(1, max|ref|), ||ours - ref|| / ||ref||)."""
    diff = (ours.double() - ref.double())
    scale = max(1.0, ref.abs().max().item())
    return diff.abs().max().item() / scale, (diff.norm() / ref.double().norm()).item()


def _compared(fixture: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Errors of every reference tensor of the fixture (all must have a counterpart)."""
    refs = [k for k in fixture if k.startswith(("output.", "deep.", "act."))]
    assert sorted(refs) == sorted(k for k in got if k in fixture), "a reference tensor is not compared"
    errors = {}
    for key in refs:
        assert got[key].shape == fixture[key].shape, key
        errors[key] = _errors(got[key], fixture[key])
    return errors


def _group(key: str) -> str:
    """A report group: the key without task names and indices."""
    key = re.sub(r"#\w+", "#<task or branch>", key)
    return re.sub(r"(?<=[._])(semseg|depth|normals|edge)\b", "<task>", re.sub(r"\d", "<i>", key))


def test_official_weights_load_strictly_and_compute_the_official_function(fixture, capsys):
    """Every output, deep-supervision map (predictions and features_<task>) and recorded
    activation within the fixture's tolerance, BatchNorm statistics included."""
    model = _model(fixture)
    errors = _compared(fixture, _run(model, fixture["input.image"]))
    assert len(errors) == 4 + 32 + 2 + 9 + 3 * 2 + 3 * 4 + 4 * 4 + 4
    groups: dict[str, list[float]] = {}
    for key, (abs_err, rel_l2) in errors.items():
        worst = groups.setdefault(_group(key), [0.0, 0.0])
        worst[0], worst[1] = max(worst[0], abs_err), max(worst[1], rel_l2)
    with capsys.disabled():
        print("\nMTI-Net vs the official fixture (max abs / max(1, max|ref|), relative L2):")
        for group, (abs_err, rel_l2) in sorted(groups.items()):
            print(f"  {group:<46} {abs_err:.1e}  {rel_l2:.1e}")
    bad = {k: e for k, e in errors.items() if e[0] > TOLERANCE or e[1] > TOLERANCE}
    assert not bad, bad


def test_convert_infers_the_official_layout_without_a_target(fixture):
    """Without ``target``, the HRNet layout and the tasks are read from the official
    state_dict: the same names and shapes as our model built with the fixture's settings."""
    official = _official(fixture)
    assert official_backbone(official) == "hrnet_w18_small_v2"
    assert official_tasks(official) == {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}
    with torch.device("meta"):
        ours = build_model(load_config(None, SETTINGS)).state_dict()
    converted = convert(official).state_dict
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ours.items()}


_OFFICIAL_NAMES = [  # ours -> official, the inverse of the converter's rules
    (r"backbone\.body\.(.+)", r"backbone.\1"),
    (r"decoder\.initial\.(\d)\.refine\.(\w+)\.(\d)\.shortcut\.(.+)", r"scale_\1.refinement.\2.\3.downsample.\4"),
    (r"decoder\.initial\.(\d)\.refine\.(.+)", r"scale_\1.refinement.\2"),
    (r"decoder\.initial\.(\d)\.predict\.(.+)", r"scale_\1.decoders.\2"),
    (r"decoder\.propagation\.(\d)\.masks\.(\d)\.shortcut\.(.+)", r"fpm_scale_{\1}.non_linear.\2.downsample.\3"),
    (r"decoder\.propagation\.(\d)\.masks\.(.+)", r"fpm_scale_{\1}.non_linear.\2"),
    (r"decoder\.propagation\.(\d)\.reduce\.shortcut\.(.+)", r"fpm_scale_{\1}.dimensionality_reduction.downsample.\2"),
    (r"decoder\.propagation\.(\d)\.reduce\.(.+)", r"fpm_scale_{\1}.dimensionality_reduction.\2"),
    (r"decoder\.propagation\.(\d)\.gates\.(\w+)\.gate\.(.+)", r"fpm_scale_{\1}.se.\2.squeeze.\3"),
    (r"decoder\.distillation\.(\d)\.paths\.(\w+)\.(\w+)\.attention\.(.+)", r"distillation_scale_\1.self_attention.\2.\3.attention.0.\4"),
    (r"decoder\.distillation\.(\d)\.paths\.(\w+)\.(\w+)\.value\.(.+)", r"distillation_scale_\1.self_attention.\2.\3.conv.\4"),
    (r"decoder\.heads\.(\w+)\.(.+)", r"heads.\1.last_layer.\2"),
]


def _official_name(ours: str) -> str:
    for pattern, template in _OFFICIAL_NAMES:
        match = re.fullmatch(pattern, ours)
        if match:
            name = match.expand(template)
            name = re.sub(r"fpm_scale_\{(\d)\}", lambda m: f"fpm_scale_{int(m[1]) + 1}", name)
            return name.replace(".parts.", ".human_parts.")
    raise AssertionError(ours)


@pytest.mark.parametrize(
    ("backbone", "layout", "tasks", "tensors"),
    [
        ("hrnet_w48", "nyud", ["semseg", "depth", "normals", "edge"], 2648),  # the paper's model
        ("hrnet_w18_small_v2", "pascal", ["semseg", "parts", "sal", "normals", "edge"], None),
    ],
)
def test_convert_is_general(fixture, backbone, layout, tasks, tensors):
    """Official-style state_dicts of HRNet-W48 (NYUD: 2,648 tensors) and of 5 PASCAL
    tasks (``human_parts`` is our ``parts``), named like the fixture's, convert one to one
    to our model of that layout (on the meta device: names and shapes only)."""
    cfg = load_config(None, {**SETTINGS, "model.backbone": backbone, "data.layout": layout,
                             "tasks": dict.fromkeys(tasks, 1.0)})
    with torch.device("meta"):
        ours = build_model(cfg).state_dict()
    official = {_official_name(k): v for k, v in ours.items()}
    assert len(official) == len(ours) == (tensors or len(ours))
    def pattern(key: str) -> str:
        return re.sub(r"\d+", "N", re.sub(r"\b(semseg|depth|normals|edge|human_parts|sal)\b", "T", key))

    assert {pattern(k) for k in official} == {pattern(k) for k in _official(fixture)}
    assert official_backbone(official) == backbone
    converted = convert(official).state_dict
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.items()}


def test_nearest_fuse_upsampling_breaks_the_match(fixture):
    """timm's classification HRNet (``model.hrnet_fuse_upsample: nearest``) leaves the
    first fusion's input equal and moves stage 2's first branch and every output."""
    got = _run(_model(fixture, **{"model.hrnet_fuse_upsample": "nearest"}), fixture["input.image"])
    errors = _compared(fixture, got)
    assert max(errors["act.backbone.transition1.0"]) <= TOLERANCE
    assert errors["act.backbone.stage2#0"][1] > BROKEN
    for t in TASKS:
        assert errors[f"output.{t}"][1] > BROKEN, t
        for i in range(4):
            assert errors[f"deep.scale_{i}.{t}"][1] > BROKEN, (i, t)


def test_per_task_fpm_softmax_breaks_the_match(fixture):
    """The paper's reading (``model.mtinet_fpm_softmax: tasks``) keeps everything before
    the first FPM (backbone, scale 3) and its mask logits, and moves what follows."""
    got = _run(_model(fixture, **{"model.mtinet_fpm_softmax": "tasks"}), fixture["input.image"])
    errors = _compared(fixture, got)
    for key in ("act.backbone.stage4#3", "act.fpm_scale_3.non_linear", "deep.scale_3.semseg"):
        assert max(errors[key]) <= TOLERANCE, key
    assert errors["act.fpm_scale_3.dimensionality_reduction"][1] > BROKEN
    for t in TASKS:
        assert errors[f"output.{t}"][1] > BROKEN, t
        for i in range(3):
            assert errors[f"deep.scale_{i}.{t}"][1] > BROKEN, (i, t)


def test_fpm_softmax_axes():
    """``channel_groups`` normalises each group of N consecutive channels, ``tasks`` each
    channel across the N task blocks (here N = 2 tasks of 4 channels)."""
    from mtlsearch.models.decoders.mtinet import FeaturePropagation

    logits = torch.randn(1, 8, 3, 5)
    groups = FeaturePropagation(["a", "b"], 4, "channel_groups").mask(logits)
    tasks = FeaturePropagation(["a", "b"], 4, "tasks").mask(logits)
    ones = torch.ones(1, 4, 3, 5)
    assert torch.allclose(groups[:, 0::2] + groups[:, 1::2], ones)
    assert torch.allclose(tasks[:, :4] + tasks[:, 4:], ones)
    assert torch.allclose(groups[:, :2], torch.softmax(logits[:, :2], dim=1))
    assert torch.allclose(tasks[:, 0::4], torch.softmax(logits[:, 0::4], dim=1))
    with pytest.raises(UserError, match="model.mtinet_fpm_softmax"):
        FeaturePropagation(["a", "b"], 4, "pixels")


def test_convert_refuses_unknown_keys_wrong_shapes_and_missing_tensors(fixture):
    official = _official(fixture)
    with torch.device("meta"):
        target = build_model(load_config(None, SETTINGS)).state_dict()
    extra = {**official, "fpm_scale_3.attention.weight": torch.zeros(1), "scale_9.decoders.depth.bias": torch.zeros(1)}
    with pytest.raises(UserError, match=r"2 keys unknown .*fpm_scale_3\.attention\.weight.*scale_9\.decoders\.depth\.bias"):
        convert(extra, target=target)
    key = "fpm_scale_2.se.edge.squeeze.0.weight"
    bad = {**official, key: torch.zeros(3, 72)}
    with pytest.raises(UserError, match=rf"shape mismatches: {re.escape(key)} \(3, 72\) vs ours .*\(4, 72\)"):
        convert(bad, target=target)
    with pytest.raises(UserError, match=r"shape mismatches: fpm_scale_2\.se\.edge"):
        convert(bad)  # the inferred target has the shapes too
    lacking = {k: v for k, v in official.items() if k != "heads.edge.last_layer.1.running_var"}
    with pytest.raises(UserError, match=r"lacks 1 tensors.*decoder\.heads\.edge\.1\.running_var"):
        convert(lacking, target=target)
