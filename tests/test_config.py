"""The typed config: defaults, YAML loading, dotted overrides, errors that name the key."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from pydantic import ValidationError

from mtlsearch.config import (
    ALL_TASKS,
    Config,
    ConfigError,
    config_fields,
    load_config,
    parse_override,
    validate_tree,
)
from mtlsearch.config.registries import decoder_names, task_metrics, task_names
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


# -- the schema: ranges, registries, sources of errors -------------------------

FLOAT_KEYS = [k for k, v in config_fields().items() if isinstance(v, float)]


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", "nan", "inf"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_no_number_takes_nan_or_inf(key, bad):
    with pytest.raises(UserError, match=rf"^--set {re.escape(key)}: must be a finite number"):
        load_config(None, [f"{key}={bad}"])


BAD_VALUES = [
    ("train.lr=-1", "train.lr: must be > 0, got -1"),
    ("train.lr=0", "train.lr: must be > 0, got 0"),
    ("train.weight_decay=-1e-4", "train.weight_decay: must be >= 0, got -0.0001"),
    ("train.momentum=-0.9", "train.momentum: must be >= 0, got -0.9"),
    ("train.grad_clip=-1.0", "train.grad_clip: must be >= 0, got -1.0"),
    ("train.log_every=0", "train.log_every: must be > 0, got 0"),
    ("train.iterations=2.5", "train.iterations: expected an integer, got 2.5"),
    ("regularizer.alpha.max=-1", "regularizer.alpha.max: must be >= 0, got -1"),
    ("regularizer.alpha.ramp_fraction=2", "regularizer.alpha.ramp_fraction: must be in [0, 1], got 2"),
    ("train.seed=-1", "train.seed: must be in [0, 9223372036854775807], got -1"),
    ("data.fraction_seed=-3", "data.fraction_seed: must be in [0, "),
    ("data.synth.seed=-1", "data.synth.seed: must be in [0, "),
    ("data.num_workers=-1", "data.num_workers: must be in [0, 256], got -1"),
    ("cvm.heads=0", "cvm.heads: must be > 0, got 0"),
    ("cvm.window_splits=-2", "cvm.window_splits: must be > 0, got -2"),
    ("model.decoder_width=0", "model.decoder_width: must be in (0, 4096], got 0"),
    ("eval.edge_thresholds=0", "eval.edge_thresholds: must be in (0, 1000], got 0"),
    ("data.crop_size=[0, 64]", "data.crop_size[0]: must be in (0, 4096], got 0"),
    ("data.val_size=[-1, 64]", "data.val_size[0]: must be in [0, 4096], got -1"),
    ("data.val_size=[0, 64]", "data.val_size: give both sides, or [0, 0] for automatic"),
    ("data.synth.size=[100000, 100000]", "data.synth.size[0]: must be in [8, 4096], got 100000"),
    ("data.scale_range=[1.5, 1.0]", "data.scale_range: need 0 < low <= high, got [1.5, 1.0]"),
    ("data.scale_range=[0, 1]", "data.scale_range[0]: must be > 0, got 0"),
    ("data.fraction=1.5", "data.fraction: must be in (0, 1], got 1.5"),
    ("model.out_indices=[]", "model.out_indices: needs at least 1 item(s), got []"),
    ("model.out_indices=[-1]", "model.out_indices[0]: must be >= 0, got -1"),
    ("model.out_indices=[1, 1]", "model.out_indices: 1 is listed twice"),
    ("data.source_tasks=[sal]", "data.source_tasks: 'sal' is not one of the config's tasks"),
    ("data.source_tasks=[nosuch]", "data.source_tasks[0]: unknown task 'nosuch'"),
    ("regularizer.tasks=[]", "regularizer.tasks: expected 'all' or a non-empty list of tasks, got []"),
    ("regularizer.tasks=some", "regularizer.tasks: expected 'all' or a non-empty list of tasks"),
    ("model.backbone=notamodel", "model.backbone: 'notamodel' is not a timm model"),
    ("model.backbone=resnet81", "model.backbone: 'resnet81' is not a timm model (did you mean resnet18"),
    ("model.decoder=nosuch", "model.decoder: unknown decoder 'nosuch' (known: "),
    ("model.pretrained_path=/no/such/weights.pth", "model.pretrained_path: weights file not found: /no/such"),
    ("eval.baselines={semseg: {mIoU: 40}}", "eval.baselines.semseg.mIoU: semseg reports no metric 'mIoU'"),
    ("eval.baselines={depth: {rsme: 0.5}}", "eval.baselines.depth.rsme: depth reports no metric 'rsme'"),
    ("eval.baselines={nosuch: {miou: 1}}", "eval.baselines.nosuch: unknown task 'nosuch'"),
    ("eval.outputs=[]", "eval.outputs: needs at least 1 item(s), got []"),
    ("name=7", "name: expected a string, got 7"),
    ("tasks={}", "tasks: needs at least 1 item(s), got {}"),
    ("tasks={semseg: -1}", "tasks.semseg: must be >= 0, got -1"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_values_are_refused_with_key_and_value(override, message):
    with pytest.raises(UserError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(f"--set {message}")
    assert "\n" not in str(info.value)


def test_config_error_carries_the_key():
    with pytest.raises(ConfigError) as info:
        validate_tree({"regularizer": {"alpha": {"max": -2}}})
    assert info.value.key == "regularizer.alpha.max"
    assert info.value.reason == "must be >= 0, got -2"


@pytest.mark.parametrize("task", task_names())
def test_every_registered_task_is_a_config_task(task):
    assert task in ALL_TASKS
    cfg = load_config(None, [f"tasks={{{task}: 2.0}}", "regularizer.enabled=true", f"regularizer.tasks=[{task}]"])
    assert cfg.task_names == [task] and cfg.rendered_tasks == [task]


@pytest.mark.parametrize("task", task_names())
def test_baselines_take_every_metric_of_every_task(task):
    metrics = task_metrics(task)
    assert metrics
    cfg = load_config(None, {"tasks": {task: 1.0}, "eval.baselines": {task: {m: 1.0 for m in metrics}}})
    assert set(cfg.eval.baselines[task]) == set(metrics)


@pytest.mark.parametrize("decoder", decoder_names())
def test_every_registered_decoder_is_a_known_name(decoder):
    try:
        assert load_config(None, [f"model.decoder={decoder}"]).model.decoder == decoder
    except UserError as err:  # a decoder may need other keys; never "unknown"
        assert "unknown decoder" not in str(err)


def test_backbones_come_from_timm(tmp_path):
    assert load_config(None, ["model.backbone=resnet18.a1_in1k"]).model.backbone == "resnet18.a1_in1k"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert load_config(None, [f"model.pretrained_path={weights}"]).model.pretrained_path == str(weights)


def test_file_errors_name_the_file_and_line(write_yaml):
    path = write_yaml("train:\n  lr: 0.1\n  momentum: -2\n", "c.yaml")
    with pytest.raises(UserError, match=r"c\.yaml line 3: train\.momentum: must be >= 0, got -2$"):
        load_config(path)
    path = write_yaml("model:\n  backbne: resnet18\n", "k.yaml")
    with pytest.raises(UserError, match=r"k\.yaml line 2: model\.backbne: unknown config key \(did you mean backbone"):
        load_config(path)


def test_set_mistakes_blame_set_not_the_file(write_yaml):
    path = write_yaml("train: {lr: 0.1}\n", "c.yaml")
    for override, start in [
        ("nosuch.key=1", "--set nosuch.key: nosuch: unknown config key"),
        ("train.lr=-1", "--set train.lr: must be > 0"),
        ("train.nosuch=1", "--set train.nosuch: unknown config key"),
    ]:
        with pytest.raises(UserError) as info:
            load_config(path, [override])
        assert str(info.value).startswith(start), str(info.value)
        assert "c.yaml" not in str(info.value)


def test_assignment_is_validated():
    cfg = load_config()
    with pytest.raises(ValidationError):
        cfg.train.lr = -1.0
    cfg.name = "search/trial_0"
    assert cfg.name == "search/trial_0"


def test_export_style_copy_keeps_other_fields():
    cfg = load_config(None, ["regularizer.enabled=true", "regularizer.triplane_width=16"])
    off = cfg.model_copy(update={"regularizer": cfg.regularizer.model_copy(update={"enabled": False})})
    assert not off.regularizer.enabled and off.regularizer.triplane_width == 16 and cfg.regularizer.enabled


# -- mtlsearch config schema | show --------------------------------------------


def _main(argv, capsys):
    from mtlsearch.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_config_schema_lists_every_section(tmp_path, capsys):
    code, out, _ = _main(["config", "schema"], capsys)
    schema = json.loads(out)
    assert code == 0 and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Config.model_fields)
    target = tmp_path / "config.schema.json"
    assert _main(["config", "schema", "--out", str(target)], capsys)[0] == 0
    assert json.loads(target.read_text()) == schema
    assert _main(["config", "schema", "--out", str(target)], capsys)[0] == 0  # its own file: replaced
    precious = tmp_path / "thesis.json"
    precious.write_text('{"chapter": 1}')
    code, _, err = _main(["config", "schema", "--out", str(precious)], capsys)
    assert code == 2 and "not replacing" in err and precious.read_text() == '{"chapter": 1}'


def test_config_show_prints_the_resolved_config(write_yaml, capsys):
    path = write_yaml("train: {lr: 0.02}\n", "c.yaml")
    code, out, _ = _main(["config", "show", str(path), "--set", "regularizer.triplane_width=16"], capsys)
    assert code == 0
    cfg = load_config(yaml.safe_load(out))
    assert cfg.train.lr == 0.02 and cfg.regularizer.triplane_width == 16
    assert cfg == load_config(path, ["regularizer.triplane_width=16"])
    code, out, err = _main(["config", "show", str(path), "--set", "train.lr=-1"], capsys)
    assert code == 2 and err.strip() == "error: --set train.lr: must be > 0, got -1"


def test_json_schema_accepts_the_defaults_and_refuses_mistakes(capsys):
    jsonschema = pytest.importorskip("jsonschema")
    _, out, _ = _main(["config", "schema"], capsys)
    schema = json.loads(out)
    jsonschema.validate(json.loads(Config().model_dump_json()), schema)
    for bad in ({"train": {"lr": -1}}, {"model": {"nosuch": 1}}, {"tasks": {"nosuch": 1.0}},
                {"data": {"crop_size": [64]}}, {"regularizer": {"tasks": []}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
