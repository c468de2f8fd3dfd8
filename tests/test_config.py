"""The typed config: defaults, YAML loading, dotted overrides, errors that name the key."""

from __future__ import annotations

import pytest

from mtlsearch.config import Config, load_config, parse_override
from mtlsearch.errors import UserError


def test_defaults_match_the_paper():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.regularizer.triplane_width == 64
    assert cfg.regularizer.hidden == 64
    assert cfg.regularizer.dropout == pytest.approx(0.15)
    assert cfg.regularizer.render_scale == pytest.approx(1 / 8)
    assert cfg.regularizer.alpha.max == 4.0
    assert cfg.regularizer.alpha.ramp_fraction == 0.5
    assert cfg.cvm.depth_planes == 128
    assert cfg.tasks == {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "regularizer:\n  enabled: true\n  triplane_width: 16\ntrain:\n  lr: 0.01\n"
    )
    cfg = load_config(path, ["regularizer.triplane_width=32", "regularizer.tasks=[depth, semseg]"])
    assert cfg.regularizer.enabled is True
    assert cfg.regularizer.triplane_width == 32
    assert cfg.train.lr == pytest.approx(0.01)
    # Rendered tasks keep the config's task order, not the override's.
    assert cfg.rendered_tasks == ["semseg", "depth"]


def test_dict_overrides_and_int_to_float():
    cfg = load_config({"train": {"lr": 1}}, {"data.crop_size": [32, 48], "regularizer.alpha.max": 2})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.crop_size == (32, 48)
    assert cfg.regularizer.alpha.max == 2.0


def test_rendered_tasks_empty_when_disabled():
    assert load_config().rendered_tasks == []
    assert load_config(None, ["regularizer.enabled=true"]).rendered_tasks == [
        "semseg", "depth", "normals", "edge"
    ]


def test_flat_roundtrip():
    cfg = load_config(None, ["regularizer.alpha.schedule=step"])
    flat = cfg.flat()
    assert flat["regularizer.alpha.schedule"] == "step"
    assert flat["tasks"] == cfg.tasks
    assert load_config(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["regularizer.triplane_wdth=3"], "regularizer.triplane_wdth"),
        (["regularizer.triplane_width=abc"], "regularizer.triplane_width"),
        (["regularizer.enabled=1"], "regularizer.enabled"),
        (["regularizer.alpha.schedule=exponential"], "regularizer.alpha.schedule"),
        (["tasks={foo: 1}"], "tasks.foo"),
        (["regularizer.tasks=[semseg, sal]"], "regularizer.tasks"),
        (["data.fraction=0"], "data.fraction"),
        (["data.crop_size=[1, 2, 3]"], "data.crop_size"),
        (["cvm.enabled=true", "cvm.num_views=1"], "cvm.num_views"),
        (["regularizer.near=2"], "regularizer.near"),
        (["nokey"], "nokey"),
    ],
)
def test_mistakes_name_the_key(overrides, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace(".", r"\.")):
        load_config(None, overrides)


def test_missing_and_broken_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1, 2\n")
    with pytest.raises(UserError, match=r"bad\.yaml line \d+"):
        load_config(bad)


def test_parse_override_values():
    assert parse_override("a.b=32") == ("a.b", 32)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=[x, y]") == ("a", ["x", "y"])
    assert parse_override("a=1e-3") == ("a", 1e-3)
