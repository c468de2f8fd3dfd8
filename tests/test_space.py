"""Search space schema: parsing, validation errors (key + line), expansion, dry runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mtlsearch.config.registries import metric_directions, task_metrics, task_names
from mtlsearch.errors import UserError
from mtlsearch.space import DISTRIBUTIONS, INDEX_KEY, MAX_TRIALS, SEED_KEY, load_space
from mtlsearch.yamlio import load_mapping

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_space(path, **kwargs)
    return str(info.value)


# -- shipped spaces ----------------------------------------------------------


def test_spaces_are_shipped() -> None:
    names = {p.stem for p in SPACES}
    expected = {
        "demo", "render_tasks", "data_fraction", "aux_heads", "cross_view_consistency",
        "alpha_schedules", "triplane_width", "samples_per_ray", "shared_density",
        "explore_regularizer", "depth_planes", "num_views", "depth_range",
        "cvm_components", "reg_vs_cvm",
    }
    assert expected <= names


@pytest.mark.parametrize("profile", ["cpu", "paper"])
@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_every_shipped_space_loads_and_dry_runs(path: Path, profile: str) -> None:
    from mtlsearch.execution.search import dry_run

    if profile not in (load_mapping(path).get("profiles") or {}):
        pytest.skip(f"{path.stem} has no {profile} profile")
    space = load_space(path, profile)
    assert space.name == path.stem
    text = dry_run(space, Path("/nonexistent/trials") / space.name)
    assert space.search.algorithm in text
    if space.search.algorithm != "optuna":
        trials = space.expand()
        assert f"{len(trials)} trial(s)" in text
        for values in trials:  # every trial builds a valid config
            space.trial_config(values)
    cfg = space.static_config()
    if profile == "cpu":
        assert cfg.data.layout == "synthrooms" and cfg.train.iterations <= 300
        assert cfg.data.crop_size == (64, 80)
    else:
        assert cfg.train.iterations == 40000 and space.resources.gpus_per_worker == 1


def test_shipped_counts() -> None:
    counts = {
        "render_tasks": 5, "data_fraction": 6, "aux_heads": 3, "cross_view_consistency": 3,
        "alpha_schedules": 7, "depth_planes": 5, "num_views": 3, "cvm_components": 4,
        "reg_vs_cvm": 4, "demo": 4,
    }
    for name, n in counts.items():
        assert len(load_space(ROOT / "search_spaces" / f"{name}.yaml", "cpu").expand()) == n, name


def test_paper_and_cross_view_keys() -> None:
    cv = load_space(ROOT / "search_spaces" / "cross_view_consistency.yaml", "cpu")
    static = cv.static_config()
    assert static.data.extra_frames and static.data.synth.extra_views > 0
    assert static.regularizer.ray_mode == "perspective" and static.regularizer.depth_mode == "expected"
    assert cv.paper == "3dmtl/table3_cross_view"
    cvm = load_space(ROOT / "search_spaces" / "cvm_components.yaml", "cpu")
    cfg = cvm.static_config()
    assert cfg.data.extra_frames and cfg.cvm.layers <= 2 and cfg.cvm.width == 32
    # "neither" is the model without a cross-view module, trained with the video frames
    trials = [cvm.trial_config(v) for v in cvm.expand()]
    assert [(c.cvm.enabled, c.cvm.use_cost_volume, c.cvm.use_features) for c in trials] == [
        (False, False, True), (True, False, True), (True, True, False), (True, True, True)]
    assert all(c.data.extra_frames for c in trials)


# -- expansion ---------------------------------------------------------------


def test_grid_times_seeds(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: g
        space:
          regularizer.triplane_width: {grid: [16, 32, 64]}
        seeds: [0, 1]
    """)
    space = load_space(path)
    trials = space.expand()
    assert len(trials) == 6
    assert [(t["regularizer.triplane_width"], t[SEED_KEY]) for t in trials] == [
        (16, 0), (16, 1), (32, 0), (32, 1), (64, 0), (64, 1)
    ]
    assert space.ablated_keys == ["regularizer.triplane_width", SEED_KEY]
    cfg = space.trial_config(trials[3])
    assert cfg.regularizer.triplane_width == 32 and cfg.train.seed == 1


def test_conditional_grid_has_no_duplicates(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.alpha.schedule: {grid: [constant, linear_ramp]}
          regularizer.alpha.ramp_fraction: {grid: [0.25, 0.5, 0.75], when: {regularizer.alpha.schedule: linear_ramp}}
    """)
    trials = load_space(path).expand()
    # constant: 1 trial with the key recorded as None; linear_ramp: 3 trials.
    assert len(trials) == 4
    assert trials[0]["regularizer.alpha.ramp_fraction"] is None
    assert sorted(t["regularizer.alpha.ramp_fraction"] for t in trials[1:]) == [0.25, 0.5, 0.75]


def test_condition_on_fixed_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
        fixed: {regularizer.enabled: false}
        space:
          data.fraction: {grid: [0.5, 1.0]}
          regularizer.samples_per_ray: {grid: [8, 16], when: {regularizer.enabled: true}}
    """)
    trials = load_space(path).expand()
    assert len(trials) == 2 and all(t["regularizer.samples_per_ray"] is None for t in trials)


def test_random_samples_repeat_over_seeds(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.alpha.max: {loguniform: [0.5, 8]}
          regularizer.samples_per_ray: {quniform: [8, 64, 8]}
          train.lr: {uniform: [0.0001, 0.01]}
          regularizer.hidden: {randint: [16, 20]}
        seeds: [3, 4]
        search: {algorithm: random, num_samples: 5, seed: 1}
    """)
    space = load_space(path)
    trials = space.expand()
    assert len(trials) == 10
    for a, b in zip(trials[::2], trials[1::2]):  # same sample, two seeds
        assert {k: v for k, v in a.items() if k != SEED_KEY} == {k: v for k, v in b.items() if k != SEED_KEY}
        assert (a[SEED_KEY], b[SEED_KEY]) == (3, 4)
    for t in trials:
        assert 0.5 <= t["regularizer.alpha.max"] <= 8
        assert isinstance(t["regularizer.samples_per_ray"], int) and t["regularizer.samples_per_ray"] % 8 == 0
        assert 16 <= t["regularizer.hidden"] < 20
    assert trials == load_space(path).expand()  # seeded: reproducible


def test_optuna_define_by_run_respects_conditions(tmp_path: Path) -> None:
    import optuna

    path = write(tmp_path, """
        space:
          regularizer.alpha.schedule: {choice: [linear_ramp, constant]}
          regularizer.alpha.ramp_fraction: {uniform: [0, 1], when: {regularizer.alpha.schedule: linear_ramp}}
          regularizer.tasks: {choice: [[semseg], all]}
        search: {algorithm: optuna, metric: [semseg_miou, depth_rmse], mode: [max, min], num_samples: 4}
    """)
    space = load_space(path)
    fn = space.define_by_run()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(0))
    seen = set()
    for _ in range(12):
        t = study.ask()
        values = fn(t)
        seen.add(values["regularizer.alpha.schedule"])
        if values["regularizer.alpha.schedule"] == "constant":
            assert values["regularizer.alpha.ramp_fraction"] is None
            assert "regularizer.alpha.ramp_fraction" not in t.params
        else:
            assert 0 <= values["regularizer.alpha.ramp_fraction"] <= 1
        assert values["regularizer.tasks"] in (["semseg"], "all")
        space.trial_config(values)
    assert seen == {"linear_ramp", "constant"}


# -- validation errors name the key and the line -----------------------------


def test_unknown_key_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: x
        space:
          regularizer.enabled: {grid: [false, true]}
          regularizer.alpha.mx: {grid: [1, 2]}
    """)
    msg = error_of(path)
    assert "line 4" in msg and "space.regularizer.alpha.mx" in msg and "regularizer.alpha.max" in msg


def test_unknown_top_level_and_fixed_keys(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "name: x\nserach: {algorithm: grid}\n"))
    assert "line 2" in msg and "serach" in msg and "search" in msg
    msg = error_of(write(tmp_path, "fixed:\n  train.iterations: 10\n  train.itrations: 5\n"))
    assert "line 3" in msg and "fixed.train.itrations" in msg


def test_wrong_type_of_grid_value(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.triplane_width: {grid: [16, wide]}
    """)
    msg = error_of(path)
    assert "line 2" in msg and "space.regularizer.triplane_width" in msg and "wide" in msg


def test_wrong_type_of_sampled_value(tmp_path: Path) -> None:
    # uniform samples floats; an int field must say so.
    msg = error_of(write(tmp_path, "space:\n  regularizer.samples_per_ray: {uniform: [8, 64]}\n"))
    assert "line 2" in msg and "integer" in msg
    # the extremes go through the config's own checks
    msg = error_of(write(tmp_path, "space:\n  regularizer.alpha.ramp_fraction: {uniform: [0.5, 2]}\n"))
    assert "line 2" in msg and "ramp_fraction" in msg and "[0, 1]" in msg


def test_bad_distributions(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "space:\n  train.lr: {logunifrom: [0.001, 0.1]}\n"))
    assert "line 2" in msg and "logunifrom" in msg
    msg = error_of(write(tmp_path, "space:\n  train.lr: {loguniform: [0, 0.1]}\n"))
    assert "positive" in msg
    msg = error_of(write(tmp_path, "space:\n  train.lr: {uniform: [0.1, 0.01]}\n"))
    assert "low < high" in msg
    msg = error_of(write(tmp_path, "space:\n\n  train.lr: 0.1\n"))
    assert "line 3" in msg and "train.lr" in msg and "distribution" in msg


def test_optuna_refuses_grid(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          train.lr: {loguniform: [0.0001, 0.01]}
          regularizer.triplane_width: {grid: [16, 32]}
        search: {algorithm: optuna, metric: semseg_miou, num_samples: 2}
    """)
    msg = error_of(path)
    assert "line 3" in msg and "grid" in msg and "algorithm grid" in msg


def test_grid_refuses_continuous(tmp_path: Path) -> None:
    path = write(tmp_path, "space:\n  train.lr: {uniform: [0.001, 0.01]}\nsearch: {algorithm: grid}\n")
    msg = error_of(path)
    assert "line 2" in msg and "uniform" in msg


def test_conditional_on_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.alpha.ramp_fraction:
            grid: [0.25, 0.5]
            when: {regularizer.alpha.shedule: linear_ramp}
    """)
    msg = error_of(path)
    assert "line 4" in msg and "regularizer.alpha.shedule" in msg and "unknown config key" in msg


def test_condition_must_come_after_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.alpha.ramp_fraction: {grid: [0.25], when: {regularizer.alpha.schedule: linear_ramp}}
          regularizer.alpha.schedule: {grid: [linear_ramp, constant]}
    """)
    assert "list it first" in error_of(path)


def test_missing_profile(tmp_path: Path) -> None:
    path = write(tmp_path, """
        space:
          regularizer.enabled: {grid: [false, true]}
        profiles:
          cpu: {train.iterations: 10}
    """)
    msg = error_of(path, profile="gpu")
    assert "line 3" in msg and "'gpu'" in msg and "cpu" in msg


def test_profile_file_errors_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, "train.iterations: 10\nmodel.backbne: resnet18\n", "prof.yaml")
    path = write(tmp_path, "profiles:\n  cpu: prof.yaml\n")
    msg = error_of(path, profile="cpu")
    assert "prof.yaml line 2" in msg and "model.backbne" in msg


def test_metric_and_scheduler_checks(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "search: {metric: parts_miou}\n"))
    assert "parts" in msg and "not trained" in msg
    msg = error_of(write(tmp_path, "search: {metric: depth_rmse, mode: max}\n"))
    assert "mode min" in msg
    msg = error_of(write(tmp_path, "search: {metric: delta_m}\n"))
    assert "baselines" in msg
    path = write(tmp_path, """
        space:
          train.lr: {loguniform: [0.0001, 0.01]}
        search: {algorithm: optuna, metric: [semseg_miou, depth_rmse], mode: [max, min]}
        scheduler: {type: asha, max_t: 4}
    """)
    msg = error_of(path)
    assert "line 4" in msg and "scalar" in msg
    msg = error_of(write(tmp_path, "search: {algorithm: grid, metric: [semseg_miou, depth_rmse], mode: [max, min]}\n"))
    assert "optuna" in msg


def test_scheduler_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, """
        fixed: {train.iterations: 100, train.eval_every: 25}
        space:
          train.lr: {loguniform: [0.0001, 0.01]}
        search: {algorithm: random, metric: semseg_miou, num_samples: 3}
        scheduler: {type: asha}
    """)
    sc = load_space(path).scheduler
    assert (sc.max_t, sc.grace_period, sc.reduction_factor) == (4, 1, 2)


def test_set_overrides_and_index_key(tmp_path: Path) -> None:
    path = write(tmp_path, "space:\n  data.fraction: {grid: [0.5, 1.0]}\n")
    space = load_space(path, overrides=["train.iterations=7"])
    cfg = space.trial_config({**space.expand()[0], INDEX_KEY: 0})
    assert cfg.train.iterations == 7 and cfg.data.fraction == 0.5
    with pytest.raises(UserError, match="--set train.itr"):
        load_space(path, overrides=["train.itr=7"])


# -- through the CLI: exit 2, no traceback; dry run ---------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtlsearch.cli", "search", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_cli_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "space:\n  regularizer.alpha.mx: {grid: [1, 2]}\n")
    proc = _cli(str(path), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "line 2" in proc.stderr and "regularizer.alpha.mx" in proc.stderr


def test_cli_dry_run_prints_trials(tmp_path: Path) -> None:
    path = write(tmp_path, """
        name: dr
        space:
          regularizer.triplane_width: {grid: [16, 32, 64]}
        seeds: [0, 1]
    """)
    proc = _cli(str(path), "--dry-run", "--storage", str(tmp_path / "trials"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "6 trial(s)" in proc.stdout
    assert not (tmp_path / "trials").exists()


def test_absolutize_resolves_relative_defaults_against_the_launch_folder() -> None:
    """Trials run in Tune's own working folders: the default SynthRooms cache (relative)
    must point at the launch folder, so trials reuse the driver's dataset."""
    from mtlsearch.execution.search import absolutize

    tree = absolutize({"model": {"pretrained_path": "w/r18.pth"}}, "/launch")
    assert tree["data"]["synth"]["cache_dir"] == "/launch/.cache/synthrooms"
    assert tree["model"]["pretrained_path"] == "/launch/w/r18.pth"
    assert "root" not in tree["data"]  # empty: SynthRooms is generated, nothing to resolve
    kept = absolutize({"data": {"root": "/abs/NYUD_MT"}}, "/launch")
    assert kept["data"]["root"] == "/abs/NYUD_MT"


# -- the registries: every distribution, every task ----------------------------

DIST_CASES = {
    # name: (config key, arguments, check of a drawn value)
    "grid": ("regularizer.triplane_width", [16, 32], lambda v: v in (16, 32)),
    "choice": ("regularizer.tasks", [["semseg"], "all"], lambda v: v in (["semseg"], "all")),
    "uniform": ("train.lr", [0.001, 0.01], lambda v: isinstance(v, float) and 0.001 <= v <= 0.01),
    "loguniform": ("regularizer.alpha.max", [0.5, 8], lambda v: isinstance(v, float) and 0.5 <= v <= 8),
    "randint": ("regularizer.hidden", [16, 20], lambda v: isinstance(v, int) and 16 <= v < 20),
    "quniform": ("regularizer.samples_per_ray", [8, 64, 8], lambda v: isinstance(v, int) and v % 8 == 0),
}


def test_every_distribution_has_a_case() -> None:
    assert set(DIST_CASES) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_every_distribution_samples_suggests_and_becomes_a_tune_domain(tmp_path: Path, name: str) -> None:
    import numpy as np
    import optuna
    from ray import tune

    key, args, ok = DIST_CASES[name]
    algorithm = "grid" if DISTRIBUTIONS[name].discrete else "random"
    path = write(tmp_path, f"space:\n  {key}: {{{name}: {json.dumps(args)}}}\nsearch: {{algorithm: {algorithm}, num_samples: 1}}\n"
                 if algorithm == "random" else f"space:\n  {key}: {{{name}: {json.dumps(args)}}}\n")
    space = load_space(path)
    (param,) = space.params
    assert param.kind == name and param.describe().startswith(name)
    rng = np.random.default_rng(0)
    assert all(ok(param.sample(rng)) for _ in range(20))
    assert all(ok(v) for v in param.dist.candidates())
    domain = param.to_tune()
    if name == "grid":
        assert isinstance(domain, tune.search.sample.Categorical)
    assert all(ok(domain.sample()) for _ in range(5))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(5):
        value = param.suggest(study.ask())
        assert ok(value), value
        space.trial_config({key: value})
    assert len(space.expand()) == space.count_trials()


BAD_ARGS = [
    ("uniform", "train.lr", "[0.1, .inf]", "finite low < high"),
    ("uniform", "train.lr", "[.nan, 1]", "finite low < high"),
    ("loguniform", "train.lr", "[-1, 1]", "bounds must be positive"),
    ("loguniform", "train.lr", "[1, -.inf]", "finite low < high"),
    ("randint", "regularizer.hidden", "[1, 9223372036854775808]", "[-2^63, 2^63)"),
    ("randint", "regularizer.hidden", "[1.5, 4]", "must be integers"),
    ("quniform", "train.lr", "[0, 1, 0]", "q > 0"),
    ("quniform", "regularizer.hidden", "[8, 64, 0.5]", "must be integers"),
    ("grid", "regularizer.hidden", "[8, null]", "null is not a value"),
    ("choice", "regularizer.hidden", "[8, 8]", "listed twice"),
    ("grid", "regularizer.hidden", "[]", "non-empty list"),
    ("uniform", "regularizer.hidden", "[8, 64]", "is an integer"),
]


@pytest.mark.parametrize(("name", "key", "args", "fragment"), BAD_ARGS)
def test_bad_distribution_arguments(tmp_path: Path, name: str, key: str, args: str, fragment: str) -> None:
    msg = error_of(write(tmp_path, f"space:\n  {key}: {{{name}: {args}}}\n"))
    assert "line 2" in msg and f"space.{key}" in msg and fragment in msg


@pytest.mark.parametrize("task", task_names())
def test_every_task_metric_is_a_search_metric(tmp_path: Path, task: str) -> None:
    for metric in task_metrics(task):
        for prefix in ("", "render_", "avg_", "mv_"):
            name = f"{prefix}{task}_{metric}"
            space = load_space(write(tmp_path, f"fixed: {{tasks: {{{task}: 1}}}}\nsearch: {{metric: {name}}}\n"))
            assert space.search.mode == metric_directions()[f"{task}_{metric}"]
    other = "depth" if task != "depth" else "semseg"
    msg = error_of(write(tmp_path, f"fixed: {{tasks: {{{other}: 1}}}}\nsearch: {{metric: {task}_{task_metrics(task)[0]}}}\n"))
    assert "not trained" in msg and f"'{task}'" in msg
    msg = error_of(write(tmp_path, f"fixed: {{tasks: {{{task}: 1}}}}\nsearch: {{metric: {task}_nosuch}}\n"))
    assert f"{task} reports no metric 'nosuch'" in msg


# -- robustness: ranges, limits and who is blamed -----------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("search: {seed: -1}\n", ["line 1", "search.seed", "must be >= 0, got -1"]),
        ("search: {metric: semseg_mIoU}\n", ["search.metric", "semseg reports no metric 'mIoU'"]),
        ("search: {metric: depth_rsme}\n", ["search.metric", "known: rmse"]),
        ("search: {max_failures: -1}\n", ["search.max_failures", "must be >= 0"]),
        ("search: {num_samples: 0}\n", ["search.num_samples", "must be >= 1"]),
        ("resources: {cpus_per_worker: .inf}\n", ["resources.cpus_per_worker", "finite"]),
        ("resources: {gpus_per_worker: -1}\n", ["resources.gpus_per_worker", "must be in [0, 64], got -1"]),
        ("resources: {workers: 0}\n", ["resources.workers", "must be in [1, 4096], got 0"]),
        ("resources: {wrokers: 2}\n", ["resources.wrokers", "did you mean workers"]),
        ("seeds: [0, -1]\n", ["seeds", "[0, 2^63)"]),
        ("seeds: [1, 1]\n", ["seeds", "distinct"]),
        ("max_concurrent_trials: 0\n", ["max_concurrent_trials", ">= 1"]),
        ("name: a/b\n", ["line 1", "name", "folder-safe"]),
        ("scheduler: {reduction_factor: 1}\n", ["scheduler.reduction_factor", ">= 2"]),
        ("search: 5\n", ["line 1", "search", "expected a mapping, got 5"]),
        ("fixed: {data.synth.size: [100000, 5]}\n", ["line 1", "fixed.data.synth.size[0]", "[8, 4096]"]),
        ("fixed: {data.synth.scenes: 0}\n", ["fixed.data.synth.scenes", "got 0"]),
        ("space:\n  data.synth.views: {grid: [2, 0]}\n", ["line 2", "space.data.synth.views", "data.synth.views"]),
        ("base: {train: {lr: -1}}\n", ["line 1", "base.train.lr", "must be > 0"]),
    ],
)
def test_bad_space_values_name_key_and_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    msg = error_of(write(tmp_path, text))
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_profile_sections_blame_the_profile(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, "space:\n  data.fraction: {grid: [0.5]}\nprofiles:\n  cpu: {search: 5}\n"),
                   profile="cpu")
    assert "line 4" in msg and "profiles.cpu.search" in msg and "got 5" in msg
    write(tmp_path, "train.iterations: 10\nsearch: 5\n", "prof.yaml")
    msg = error_of(write(tmp_path, "profiles:\n  cpu: prof.yaml\n"), profile="cpu")
    assert "prof.yaml line 2: search: expected a mapping, got 5" in msg
    write(tmp_path, "search: {num_samples: 2}\n", "prof.yaml")
    path = write(tmp_path, "space:\n  train.lr: {uniform: [0.001, 0.1]}\nsearch: {num_samples: -1}\n"
                           "profiles:\n  cpu: {extends: prof.yaml, resources: {workers: -2}}\n")
    msg = error_of(path)  # no profile: the space's own section is wrong
    assert "space.yaml line 3: search.num_samples" in msg
    msg = error_of(path, profile="cpu")  # the profile's num_samples wins; its resources are wrong
    assert "space.yaml line 5: profiles.cpu.resources.workers: must be in [1, 4096], got -2" in msg
    space = load_space(write(tmp_path, "space:\n  train.lr: {uniform: [0.001, 0.1]}\n"
                                       "profiles:\n  cpu: {extends: prof.yaml}\n"), profile="cpu")
    assert space.search.num_samples == 2


def test_set_overrides_are_blamed_on_set(tmp_path: Path) -> None:
    path = write(tmp_path, "fixed: {train.lr: 0.1}\n")
    assert error_of(path, overrides=["train.lr=-2"]) == "--set train.lr: must be > 0, got -2"
    assert error_of(path, overrides=["nosuch.key=1"]).startswith("--set nosuch.key: unknown config key")


def test_oversized_searches_are_refused_before_expansion(tmp_path: Path) -> None:
    values = ", ".join(str(i) for i in range(1, 102))
    msg = error_of(write(tmp_path, f"space:\n  regularizer.hidden: {{grid: [{values}]}}\n"
                                   f"  regularizer.triplane_width: {{grid: [{values}]}}\n"))
    assert f"{101 * 101} trials" in msg and str(MAX_TRIALS) in msg
    start = time.monotonic()
    msg = error_of(write(tmp_path, "space:\n  train.lr: {uniform: [0.001, 0.1]}\n"
                                   "search: {algorithm: random, num_samples: 1000000}\nseeds: [0, 1]\n"))
    assert "2000000 trials" in msg and time.monotonic() - start < 10
    optuna = load_space(write(tmp_path, "space:\n  train.lr: {uniform: [0.001, 0.1]}\n"
                                        "search: {algorithm: optuna, num_samples: 1000000}\n"))
    assert optuna.search.num_samples == 1000000


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_counted_trials_match_the_expansion(path: Path) -> None:
    space = load_space(path, "cpu")
    if space.search.algorithm != "optuna":
        assert space.count_trials() == len(space.expand())
    assert space.tree() == space.tree({}) and space.static_config() == space.trial_config({})
