"""Search space schema: parsing, validation errors (key + line), expansion, dry runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtlsearch.errors import UserError
from mtlsearch.space import INDEX_KEY, SEED_KEY, load_space

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
    from mtlsearch.search import dry_run

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
    assert cv.static_config().data.source_tasks == ["depth"]
    assert cv.paper == "3dmtl/table3_cross_view"
    cvm = load_space(ROOT / "search_spaces" / "cvm_components.yaml", "cpu")
    cfg = cvm.static_config()
    assert cfg.cvm.enabled and cfg.cvm.layers <= 2 and cfg.cvm.width == 32


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
    from mtlsearch.search import absolutize

    tree = absolutize({"model": {"pretrained_path": "w/r18.pth"}}, "/launch")
    assert tree["data"]["synth"]["cache_dir"] == "/launch/.cache/synthrooms"
    assert tree["model"]["pretrained_path"] == "/launch/w/r18.pth"
    assert "root" not in tree["data"]  # empty: SynthRooms is generated, nothing to resolve
    kept = absolutize({"data": {"root": "/abs/NYUD_MT"}}, "/launch")
    assert kept["data"]["root"] == "/abs/NYUD_MT"
