"""``model.weights``: a full-model state_dict loaded strictly after the backbone's
pretrained weights (training-only parts may be absent), and ``mtlsearch weights convert``'s
checks. The conversions of the official checkpoints themselves are tested against the
official fixtures in ``test_official_mtinet.py`` and ``test_official_invpt.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import build_model

BASE = {"model.backbone": "resnet18", "model.decoder_width": 16, "tasks": {"semseg": 1.0, "depth": 1.0}}
REG = {"regularizer.enabled": True, "regularizer.triplane_width": 8, "regularizer.hidden": 16,
       "regularizer.samples_per_ray": 4}


def _model(**overrides):
    torch.manual_seed(overrides.pop("seed", 0))
    return build_model(load_config(None, {**BASE, **overrides})).eval()


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_a_full_model_file_reproduces_the_model(tmp_path: Path) -> None:
    source = _model(seed=1)
    path = _save(source.state_dict(), tmp_path / "full.safetensors")
    fresh = _model(seed=2)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(image)["heads"]["depth"], source(image)["heads"]["depth"])
        loaded = _model(seed=2, **{"model.weights": str(path)})
        for task in ("semseg", "depth"):
            assert torch.equal(loaded(image)["heads"][task], source(image)["heads"][task])


def test_training_only_parts_may_be_absent_and_start_fresh(tmp_path: Path) -> None:
    inference = _model(seed=1)
    path = _save(inference.state_dict(), tmp_path / "official-like.safetensors")
    with_reg = _model(seed=3, **REG, **{"model.weights": str(path)})
    assert with_reg.regularizer is not None
    for key, value in inference.state_dict().items():
        assert torch.equal(with_reg.state_dict()[key], value), key


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s.update({"decoder.not_a_layer.weight": torch.zeros(3)}), r"1 unknown key\(s\): decoder\.not_a_layer\.weight"),
    (lambda s: [s.pop(k) for k in [k for k in s if k.startswith("backbone.")][:5]], r"5 missing key\(s\): backbone\..*\(5 in all\)"),
    (lambda s: s.update({k: torch.zeros(1) for k in [k for k in s if k.endswith("weight")][:1]}), r"1 mis-shaped tensor\(s\): .* \(1,\) vs ours"),
])
def test_a_file_that_does_not_fit_is_one_error_naming_the_keys(tmp_path: Path, edit, match) -> None:
    state = dict(_model().state_dict())
    edit(state)
    path = _save(state, tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match=r"model\.weights: .*bad\.safetensors does not fit this model: " + match):
        _model(**{"model.weights": str(path)})


def test_a_missing_weights_file_is_refused_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"model\.weights.*not found"):
        load_config(None, {**BASE, "model.weights": str(tmp_path / "nope.safetensors")})


def test_convert_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    from mtlsearch.cli import build_parser
    from mtlsearch.models.weights import run_convert

    mine = tmp_path / "precious.safetensors"
    _save({"x": torch.zeros(2)}, mine)
    before = mine.read_bytes()
    args = build_parser().parse_args(["weights", "convert", str(mine), "--from", "mtinet", "--out", str(mine)])
    with pytest.raises(UserError, match="precious.safetensors"):
        run_convert(args)
    assert mine.read_bytes() == before


# -- the official checkpoints end to end: convert on the command line, load by config --------

OFFICIAL = Path(__file__).parent / "fixtures" / "official"


@pytest.mark.parametrize("source", ["mtinet", "invpt"])
def test_an_official_checkpoint_converts_and_loads_through_model_weights(
    source: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The fixture's official state_dict saved as a training checkpoint would be
    (``{"model": ...}``, ``module.`` prefixes), converted by ``mtlsearch weights convert``
    and loaded by ``model.weights``: the model reproduces the official output."""
    from safetensors.torch import load_file

    from mtlsearch.cli import main

    if source == "mtinet":
        from tests.test_official_mtinet import FIXTURE, SETTINGS
        overrides = SETTINGS
    else:
        from tests.test_official_invpt import FIXTURE, _config
        FIXTURE = FIXTURE.with_suffix(".safetensors")
        overrides = _config().flat()
    data = load_file(str(FIXTURE))
    official = {k: v for k, v in data.items() if not k.startswith(("input.", "output.", "deep.", "act."))}
    if source == "invpt":  # load_file sorts keys: InvPT's converter is told the order
        from tests.test_official_invpt import TASKS
        tasks = ["--tasks", ",".join(TASKS)]
    else:  # as in an official .pth: the heads in the official order, read from the keys
        from tests.test_official_mtinet import TASKS

        def rank(key: str) -> int:
            parts = key.split(".")
            return 1 + list(TASKS).index(parts[1]) if parts[0] == "heads" else 0

        official = {k: official[k] for k in sorted(official, key=rank)}
        tasks = []
    checkpoint = tmp_path / "official.pth"
    torch.save({"epoch": 3, "model": {f"module.{k}": v for k, v in official.items()}}, checkpoint)
    out = tmp_path / "ours.safetensors"
    with pytest.raises(SystemExit) as done:
        main(["weights", "convert", str(checkpoint), "--from", source, "--out", str(out), *tasks])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    if source == "invpt":
        assert "dropped 14 official tensor(s)" in printed

    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["tasks"] == ",".join(TASKS)
    cfg = load_config(None, {**overrides, "model.weights": str(out)})
    model = build_model(cfg).eval()
    # The same weights in another task order would compute another function: refused.
    swapped = dict(reversed(list(cfg.tasks.items())))
    with pytest.raises(UserError, match=r"tasks are in the order semseg, depth, normals, edge; list"):
        build_model(load_config(None, {**overrides, "model.weights": str(out), "tasks": swapped}))
    with torch.no_grad():
        got = model(data["input.image"])["heads"]["semseg"]
    ref = data["output.semseg"]
    assert (got - ref).norm() / ref.norm() < 1e-4
    # A second convert over our own file is allowed (it is ours); the result is the same.
    with pytest.raises(SystemExit):
        main(["weights", "convert", str(checkpoint), "--from", source, "--out", str(out), *tasks])


def test_evaluate_scores_the_weights_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``mtlsearch evaluate CONFIG --set model.weights=...`` prints the split's metrics of
    exactly those weights: the same numbers as evaluating that model in-process, and
    different ones for other weights."""
    import re

    import yaml

    from mtlsearch.cli import main
    from mtlsearch.data.pipeline import build_datasets, build_loader, resolve_root
    from mtlsearch.evaluate import evaluate
    from tests.tiny import tiny_base

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_base(tmp_path / "cache")))
    cfg = load_config(str(config))
    root = resolve_root(cfg)
    _, val_ds, info = build_datasets(cfg, root)
    torch.manual_seed(4)
    model = build_model(cfg, info.num_classes)
    expected = evaluate(model, build_loader(val_ds, cfg, train=False, distributed=False), cfg, info, "cpu")
    weights = _save(model.state_dict(), tmp_path / "w.safetensors")

    def printed(*extra: str) -> dict[str, float]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(["evaluate", str(config), *extra])
        assert done.value.code == 0
        return {k: float(v) for k, v in re.findall(r"^  (\w+): (\S+)$", capsys.readouterr().out, re.M)}

    ours = printed("--set", f"model.weights={weights}")
    assert set(ours) == set(expected) and "semseg_miou" in ours and "depth_rmse" in ours
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    other = printed()  # random weights of another seed
    assert other["depth_rmse"] != pytest.approx(ours["depth_rmse"], rel=1e-3)
