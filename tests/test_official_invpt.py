"""Our ``invpt`` computes the official InvPT function: the official weights of
``tests/fixtures/official/invpt_small_nyud`` (the official NYUD model at 1/8 of every width),
converted by :mod:`mtlsearch.models.official.invpt`, give the official outputs, deep
supervision and activations within the fixture's tolerance; switching back any one of the
four architectural differences that our earlier version had breaks the match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import build_model
from mtlsearch.models.official.invpt import convert

FIXTURE = Path(__file__).parent / "fixtures" / "official" / "invpt_small_nyud"
SIDECAR = json.loads(FIXTURE.with_suffix(".json").read_text())
TASKS = SIDECAR["construction"]["tasks"]
REFERENCE_PREFIXES = ("input.", "output.", "deep.", "act.")


def _config():
    vit, dec = SIDECAR["construction"]["vit"], SIDECAR["construction"]["decoder"]
    return load_config(None, {
        "model.backbone": "vit_large_patch16_384",  # patch 16; widths from backbone_kwargs
        "model.backbone_kwargs": {"embed_dim": vit["embed_dim"], "depth": vit["depth"],
                                  "num_heads": vit["num_heads"], "drop_path_rate": vit["drop_path_rate"]},
        "model.decoder": "invpt",
        "model.decoder_width": dec["embed_dim"],
        "data.layout": "nyud",
        "data.root": "unused",
        "data.crop_size": vit["img_size"],  # the position embedding's grid: 12x16
        "tasks": {t: 1.0 for t in TASKS},  # the official task order
    })


@pytest.fixture(scope="module")
def fixture():
    from safetensors.torch import load_file

    data = load_file(str(FIXTURE.with_suffix(".safetensors")))
    official = {k: v for k, v in data.items() if not k.startswith(REFERENCE_PREFIXES)}
    return official, {k: v for k, v in data.items() if k.startswith(REFERENCE_PREFIXES)}


@pytest.fixture(scope="module")
def model(fixture):
    official, _ = fixture
    torch.manual_seed(0)
    model = build_model(_config()).eval()
    model.load_state_dict(convert(official, TASKS).state_dict, strict=True)
    return model


def _errors(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max |ours - ref| / max(1, max |ref|), relative L2), the fixture's two measures."""
    assert ours.shape == ref.shape, (tuple(ours.shape), tuple(ref.shape))
    diff = (ours.double() - ref.double())
    return float(diff.abs().max()) / max(1.0, float(ref.abs().max())), float(diff.norm() / ref.double().norm())


def _run(model, image, hooks=None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    handles = [module.register_forward_hook(fn) for module, fn in (hooks or [])]
    try:
        with torch.no_grad():
            return model(image)
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(threads)


def _activation_hooks(model, acts: dict[str, torch.Tensor]):
    """Forward hooks storing our tensors under the fixture's ``act.`` names."""
    dec, vit = model.decoder, model.backbone.body.model

    def keep(name, pick=lambda out: out):
        return lambda module, args, out: acts.__setitem__(name, pick(out))

    hooks = [
        (vit.patch_embed, keep("act.backbone.patch_embed", lambda o: o.flatten(1, 2))),  # NHWC tokens
        (vit.blocks[23], keep("act.backbone.blocks.23")),
        (model.backbone, lambda m, a, out: acts.update(
            {f"act.backbone#selected_fea.{i}": f.flatten(2).transpose(1, 2) for i, f in enumerate(out)})),
        (dec.encoder_proj[1], keep("act.multi_task_decoder.scale_embed.0")),
        (dec.encoder_proj[0], keep("act.multi_task_decoder.scale_embed.1")),
        (dec.preliminary["semseg"], lambda m, args, out: acts.__setitem__(
            "act.multi_task_decoder.preliminary_decoder.semseg#input", args[0])),
    ]
    for t in TASKS:
        hooks += [
            (dec.preliminary[t], keep(f"act.multi_task_decoder.preliminary_decoder.{t}")),
            (dec.mix[t], keep(f"act.multi_task_decoder.invpt.mix_proj.{t}")),
            (dec.heads[t], keep(f"act.heads.{t}")),
        ]
    for i, stage in enumerate(dec.stages):
        pre = f"act.multi_task_decoder.invpt.invpt_stages.{i}"
        hooks += [
            (stage.attn.proj, keep(f"{pre}.blocks.0.attn")),
            (stage.attn, keep(f"{pre}.blocks.0.attn#scores", lambda o: o[1][0])),
            (stage, lambda m, a, out, pre=pre: acts.update({f"{pre}#{t}": x for t, x in zip(TASKS, out[0])})),
            (stage.norm_out, keep(f"act.multi_task_decoder.invpt.norm_mts.{i}")),
        ]
        for j in range(len(TASKS)) if i else []:
            hooks += [
                (stage.up[j], keep(f"{pre}.patch_embed.{j}")),
                (stage.to_out[j], keep(f"act.multi_task_decoder.invpt.redu_chan.{i}.{j}")),
            ]
    return hooks


def _ours(model, ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    acts: dict[str, torch.Tensor] = {}
    out = _run(model, ref["input.image"], _activation_hooks(model, acts))
    return {
        **{f"output.{t}": out["heads"][t] for t in TASKS},
        **{f"deep.{t}": out["inter"][f"{t}@32"] for t in TASKS},
        **acts,
    }


def test_conversion_consumes_every_used_weight_and_drops_exactly_the_unused(fixture, model):
    official, _ = fixture
    conversion = convert(official, TASKS)
    assert sorted(conversion.dropped) == sorted(SIDECAR["construction"]["state_dict_entries_unused_by_forward"])
    assert len(conversion.state_dict) + len(conversion.dropped) == len(official) == 654
    assert set(conversion.state_dict) == set(model.state_dict())  # strict, both ways
    for key, value in model.state_dict().items():
        assert torch.equal(value, conversion.state_dict[key]), key
    vit = model.backbone.body.model
    assert tuple(vit.patch_embed.grid_size) == (12, 16) and vit.pos_embed.shape == (1, 193, 128)


def test_outputs_deep_supervision_and_activations_match_the_official_code(fixture, model, capsys):
    """Every stored tensor but the discarded block-18 skip: 4 outputs, 4 deep-supervision
    maps (at 1/32) and 58 of the 59 activations (reported in forward order)."""
    _, ref = fixture
    ours = _ours(model, ref)
    compared = [k for k, _, _ in SIDECAR["keys"] if k.startswith(("output.", "deep.", "act."))]  # forward order
    assert set(compared) - set(ours) == {"act.multi_task_decoder.scale_embed.2"}  # the discarded skip
    failures, worst = [], {}
    for key in compared:
        if key not in ours:
            continue
        max_abs, rel_l2 = _errors(ours[key], ref[key])
        group = key.split(".")[0] if not key.startswith("act.") else "act"
        worst[group] = (max(worst.get(group, (0, 0))[0], max_abs), max(worst.get(group, (0, 0))[1], rel_l2))
        if max_abs > 1e-4 or rel_l2 > 1e-4:
            failures.append(f"{key}: max abs {max_abs:.2e}, rel L2 {rel_l2:.2e}")
    assert not failures, "\n".join(failures)
    assert len(compared) == 67 and set(worst) == {"output", "deep", "act"}
    with capsys.disabled():
        print("\n" + "\n".join(f"{g:<7} max abs {a:.1e}  rel L2 {r:.1e}" for g, (a, r) in worst.items()))


SWITCHES = {
    # stages at 1/16, 1/8, 1/4 (the decoder input not halved)
    "stage_scales": lambda m: [(m.decoder, "_input_stride", 16)],
    # the last tap without the ViT's final LayerNorm
    "final_norm": lambda m: [(m.backbone, "final_norm", False)],
    # block 18 at 1/16 and block 12 at 1/8 instead of blocks 12 and 6
    "skips": lambda m: [(m.decoder, "_skip_taps", (2, 1))],
    # logits scaled by the head width's dim**-0.5
    "attention_scale": lambda m: [(s.attn, "scale", (m.decoder.dims[i] // s.attn.heads) ** -0.5)
                                  for i, s in enumerate(m.decoder.stages)],
}


@pytest.mark.parametrize("difference", sorted(SWITCHES))
def test_each_known_difference_breaks_the_match(fixture, model, monkeypatch, difference):
    """Each of the four architectural differences alone moves every output by > 1e-2."""
    _, ref = fixture
    for obj, name, value in SWITCHES[difference](model):
        monkeypatch.setattr(obj, name, value)
    out = _run(model, ref["input.image"])
    for t in TASKS:
        assert _errors(out["heads"][t], ref[f"output.{t}"])[1] > 1e-2, (difference, t)


def test_convert_refuses_unknown_keys_and_impossible_shapes(fixture):
    official, _ = fixture
    with pytest.raises(UserError, match=r"2 unknown keys: .*backbone\.head\.weight.*multi_task_decoder\.extra"):
        convert({**official, "backbone.head.weight": torch.zeros(3), "multi_task_decoder.extra": torch.zeros(1)}, TASKS)
    key = "multi_task_decoder.invpt.invpt_stages.1.blocks.0.attn.proj_q.weight"
    with pytest.raises(UserError, match=rf"1 tensors of impossible shape .*{key} \(36, 35\)"):
        convert({**official, key: torch.zeros(36, 35)}, TASKS)
    key = "heads.depth.linear_pred.weight"
    with pytest.raises(UserError, match=rf"{key} \(1, 71, 1, 1\) \(expected \(1, 72, 1, 1\)\)"):
        convert({**official, key: torch.zeros(1, 71, 1, 1)}, TASKS)
    with pytest.raises(UserError, match="its tasks are"):
        convert(official, ["semseg", "depth"])


def test_backbone_kwargs_reach_timm_and_are_checked():
    """``model.backbone_kwargs`` builds the fixture's reduced ViT; a keyword timm rejects,
    or one mtlsearch sets itself, is an error naming the key."""
    cfg = _config()
    with torch.device("meta"):
        vit = build_model(cfg).backbone.body.model
    assert (len(vit.blocks), vit.embed_dim, vit.blocks[0].attn.num_heads) == (24, 128, 2)
    assert vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.15)
    for bad, message in [({"embed_dimm": 3}, "embed_dimm"), ({"pretrained": True}, "pretrained cannot be set")]:
        with pytest.raises(UserError, match=rf"model\.backbone_kwargs: .*{message}"):
            load_config(None, {"model.backbone": "vit_tiny_patch16_224", "model.backbone_kwargs": bad})
