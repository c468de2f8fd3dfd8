"""The researcher's workflow (issue 16): configs, CLI flags, samplers and schedulers,
tracking, ``best``/``status``, loss plots, ``reproduce`` planning, docs against files.

Everything here runs without Ray; the end-to-end searches are in
``tests/test_workflow_ray.py`` (marked slow).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from mtlsearch.cli import build_parser
from mtlsearch.config import Config, flatten, load_config
from mtlsearch.config.document import default_yaml
from mtlsearch.errors import UserError
from mtlsearch.space import load_space
from tests.searchdirs import make_finished_search as make_search
from tests.tiny import tiny_base, write_space

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "search_spaces"


# -- configs/ ----------------------------------------------------------------------


def test_default_yaml_is_generated_from_the_schema() -> None:
    """configs/default.yaml is exactly what the generator writes now (regenerate with
    ``python -m mtlsearch.config.document configs/default.yaml``)."""
    stale = "configs/default.yaml is stale: run python -m mtlsearch.config.document configs/default.yaml"
    assert (ROOT / "configs" / "default.yaml").read_text(encoding="utf-8") == default_yaml(), stale


def test_default_yaml_holds_every_key_with_its_default_and_docstring() -> None:
    text = default_yaml()
    assert load_config(yaml.safe_load(text)) == Config()
    lines = text.splitlines()
    assert "    # Image size (height, width), 8 to 4096 pixels per side." in lines  # data.synth.size
    assert "  # Backbone, decoder and output initialisation." not in lines  # top-level section
    assert "# Backbone, decoder and output initialisation." in lines
    keys = set(flatten(yaml.safe_load(text)))
    assert keys == set(Config().flat())


def _profile_keys(name: str) -> dict:
    raw = yaml.safe_load((SPACES / "profiles" / f"{name}.yaml").read_text())
    return {k: v for k, v in raw.items() if k not in ("resources", "max_concurrent_trials")}


@pytest.mark.parametrize(("config", "profile"), [
    ("synthrooms_cpu", "cpu"), ("nyud_invpt", "paper_invpt"), ("pascal_mtinet", "paper_mtinet_pascal"),
])
def test_ready_configs_match_their_profiles(config: str, profile: str) -> None:
    """Each ready config is its profile as a config file, with the regularizer on."""
    cfg = load_config(ROOT / "configs" / f"{config}.yaml")
    assert cfg.regularizer.enabled
    flat = cfg.flat()
    for key, value in _profile_keys(profile).items():
        got = flat[key]
        want = tuple(value) if isinstance(value, list) and isinstance(got, tuple) else value
        assert got == want, key


def test_ready_configs_name_existing_decoders() -> None:
    from mtlsearch.config.registries import decoder_names

    assert {"invpt", "mtinet"} <= set(decoder_names())
    assert load_config(ROOT / "configs" / "nyud_invpt.yaml").model.decoder == "invpt"
    assert load_config(ROOT / "configs" / "pascal_mtinet.yaml").model.decoder == "mtinet"


# -- command line -----------------------------------------------------------------------


def test_version_comes_from_package_metadata(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"mtlsearch {version('mtlsearch')}"


def test_train_config_is_optional() -> None:
    args = build_parser().parse_args(["train", "--set", "train.iterations=4"])
    assert args.config is None and args.overrides == ["train.iterations=4"]
    assert load_config(args.config, args.overrides).train.iterations == 4


def test_train_refuses_a_bad_key_before_ray(tmp_path: Path) -> None:
    from mtlsearch.execution.trainer import run_cli

    args = build_parser().parse_args(["train", "--set", "train.iteration=4", "--storage", str(tmp_path)])
    with pytest.raises(UserError, match="train.iteration"):
        run_cli(args)


def test_search_flags_override_the_space(tmp_path: Path) -> None:
    from mtlsearch.execution.search import cli_sections

    path = write_space(tmp_path, {
        "name": "opt", "base": tiny_base(), "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
        "search": {"algorithm": "optuna", "metric": "loss", "num_samples": 3},
    })
    args = build_parser().parse_args(["search", str(path), "--num-samples", "7", "--seed", "5",
                                      "--max-concurrent-trials", "3", "--tracking", "mlflow"])
    sections = cli_sections(args)
    assert sections == {"search": {"num_samples": 7, "seed": 5}, "max_concurrent_trials": 3,
                        "tracking": ["mlflow"]}
    space = load_space(path, None, [], sections)
    assert (space.search.num_samples, space.search.seed, space.max_concurrent_trials) == (7, 5, 3)
    assert space.tracking == {"mlflow": {}}
    with pytest.raises(UserError, match=r"command line: search\.num_samples"):
        load_space(path, None, [], {"search": {"num_samples": 0}})
    args = build_parser().parse_args(["search", str(path), "--sampler", "nsga2"])
    assert load_space(path, None, [], cli_sections(args)).search.sampler == "nsga2"


def test_search_flag_scheduler_adds_or_changes_the_scheduler(tmp_path: Path) -> None:
    from mtlsearch.execution.search import cli_sections

    path = write_space(tmp_path, {"name": "g", "base": tiny_base(),
                                  "space": {"train.lr": {"grid": [0.001, 0.01]}},
                                  "scheduler": {"type": "asha", "max_t": 2, "grace_period": 2}})
    args = build_parser().parse_args(["search", str(path), "--scheduler", "median"])
    sc = load_space(path, None, [], cli_sections(args)).scheduler
    assert (sc.type, sc.grace_period) == ("median", 2)


def test_search_flag_num_samples_on_a_grid_is_refused(tmp_path: Path) -> None:
    path = write_space(tmp_path, {"name": "g", "base": tiny_base(),
                                  "space": {"train.lr": {"grid": [0.001, 0.01]}}})
    with pytest.raises(UserError, match="algorithm grid runs every grid point once"):
        load_space(path, None, [], {"search": {"num_samples": 3}})


# -- samplers and schedulers --------------------------------------------------------------


def _optuna_space(tmp_path: Path, search: dict, name: str = "s") -> Path:
    return write_space(tmp_path, {
        "name": name, "base": tiny_base(),
        "space": {"train.lr": {"loguniform": [1e-4, 1e-2]},
                  "regularizer.alpha.max": {"uniform": [0.5, 4.0]}},
        "search": {"algorithm": "optuna", **search},
    })


@pytest.mark.parametrize(("sampler", "cls"), [
    ("tpe", "TPESampler"), ("nsga2", "NSGAIISampler"), ("cmaes", "CmaEsSampler"),
    ("gp", "GPSampler"), ("random", "RandomSampler"),
])
def test_every_sampler_is_built(tmp_path: Path, sampler: str, cls: str) -> None:
    from mtlsearch.execution.strategies import make_sampler

    space = load_space(_optuna_space(tmp_path, {"metric": "loss", "sampler": sampler, "seed": 3}))
    assert space.search.sampler == sampler
    assert type(make_sampler(space.search).inner).__name__ == cls


def test_optuna_with_several_seeds_runs_them_all_but_refuses_a_stopping_scheduler(tmp_path: Path) -> None:
    path = write_space(tmp_path, {
        "name": "s", "base": tiny_base(), "seeds": [0, 1, 2],
        "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
        "search": {"algorithm": "optuna", "metric": "loss", "num_samples": 4},
    })
    space = load_space(path)
    assert space.seeds == [0, 1, 2]
    from mtlsearch.execution.search import dry_run

    assert "4 configuration(s)" in dry_run(space, tmp_path / "trials") and "12 trials" in dry_run(space, tmp_path / "trials")
    from mtlsearch.execution.halving import SeedMeanASHA
    from mtlsearch.execution.strategies import make_scheduler

    asha = load_space(path, None, [], {"scheduler": {"type": "asha", "grace_period": 1}})
    assert isinstance(make_scheduler(asha), SeedMeanASHA) and make_scheduler(asha).seeds == 3
    for kind in ("median", "hyperband"):
        with pytest.raises(UserError, match=rf"scheduler.*{kind} would stop or copy one seed's trial.*use scheduler asha"):
            load_space(path, None, [], {"scheduler": {"type": kind}})


def test_nsga2_multi_objective_and_population(tmp_path: Path) -> None:
    from mtlsearch.execution.strategies import make_sampler

    space = load_space(_optuna_space(tmp_path, {
        "metric": ["semseg_miou", "depth_rmse"], "sampler": "nsga2", "population_size": 4}))
    assert make_sampler(space.search).inner._population_size == 4


@pytest.mark.parametrize(("search", "match"), [
    ({"metric": ["semseg_miou", "depth_rmse"], "sampler": "cmaes"}, "cmaes is single-objective"),
    ({"metric": "loss", "population_size": 4}, "only sampler nsga2 has a population"),
    ({"metric": "loss", "sampler": "anneal"}, "search.sampler"),
])
def test_bad_sampler_settings_are_refused(tmp_path: Path, search: dict, match: str) -> None:
    with pytest.raises(UserError, match=match):
        load_space(_optuna_space(tmp_path, search))


def test_sampler_needs_optuna(tmp_path: Path) -> None:
    path = write_space(tmp_path, {"name": "g", "base": tiny_base(),
                                  "space": {"train.lr": {"grid": [0.001, 0.01]}},
                                  "search": {"algorithm": "grid", "sampler": "nsga2"}})
    with pytest.raises(UserError, match=r"line \d+: search.sampler: nsga2: a sampler is chosen only with algorithm optuna"):
        load_space(path)


def test_missing_sampler_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmaes" else real(name, *a))
    with pytest.raises(UserError, match=r"mtlsearch\[cmaes\]"):
        load_space(_optuna_space(tmp_path, {"metric": "loss", "sampler": "cmaes"}))


def _grid_space(tmp_path: Path, scheduler: dict, space: dict | None = None, **extra: object) -> Path:
    return write_space(tmp_path, {
        "name": "sch", "base": tiny_base(),
        "space": space or {"train.lr": {"grid": [0.001, 0.003, 0.01]}},
        "search": {"algorithm": "grid", "metric": "depth_rmse"},
        "scheduler": scheduler, **extra,
    })


@pytest.mark.parametrize(("kind", "cls"), [
    ("asha", "AsyncHyperBandScheduler"), ("hyperband", "HyperBandScheduler"),
    ("median", "MedianStoppingRule"), ("pbt", "PopulationBasedTraining"),
])
def test_every_scheduler_is_built(tmp_path: Path, kind: str, cls: str) -> None:
    from mtlsearch.execution.strategies import make_scheduler

    space = load_space(_grid_space(tmp_path, {"type": kind}))
    assert space.scheduler.type == kind and space.scheduler.max_t == 2
    assert type(make_scheduler(space)).__name__ == cls


def test_pbt_synch_reaches_tune_and_is_checked(tmp_path: Path) -> None:
    from mtlsearch.execution.strategies import make_scheduler

    assert make_scheduler(load_space(_grid_space(tmp_path, {"type": "pbt"})))._synch is False
    assert make_scheduler(load_space(_grid_space(tmp_path, {"type": "pbt", "synch": True})))._synch is True
    with pytest.raises(UserError, match="scheduler.synch"):
        load_space(_grid_space(tmp_path, {"type": "pbt", "synch": "yes"}))


def test_pbt_mutations_and_mutable_keys(tmp_path: Path) -> None:
    from mtlsearch.execution.strategies import mutable_keys, pbt_mutations

    space = load_space(_grid_space(tmp_path, {"type": "pbt", "perturbation_interval": 1}, space={
        "train.lr": {"grid": [0.001, 0.01]}, "regularizer.alpha.max": {"uniform": [1.0, 4.0]},
    }, search={"algorithm": "random", "metric": "depth_rmse", "num_samples": 2}))
    mutations = pbt_mutations(space)
    assert mutations["train.lr"] == [0.001, 0.01]
    assert type(mutations["regularizer.alpha.max"]).__name__ == "Float"
    assert mutable_keys(space) == ["train.lr", "regularizer.alpha.max"]


@pytest.mark.parametrize(("body", "match"), [
    ({"space": {"regularizer.triplane_width": {"grid": [16, 32]}}},
     r"space.regularizer.triplane_width: pbt perturbs only keys that can change during training"),
    ({"base": {**tiny_base(), "train": {**tiny_base()["train"], "checkpoint_every": 4}}},
     "checkpoint_every"),
])
def test_pbt_refuses_what_cannot_change_during_training(tmp_path: Path, body: dict, match: str) -> None:
    path = _grid_space(tmp_path, {"type": "pbt"}, **{k: v for k, v in body.items() if k != "space"},
                       space=body.get("space"))
    with pytest.raises(UserError, match=match):
        load_space(path)


def test_pbt_refuses_optuna_and_schedulers_refuse_lists(tmp_path: Path) -> None:
    path = write_space(tmp_path, {"name": "o", "base": tiny_base(),
                                  "space": {"train.lr": {"loguniform": [1e-4, 1e-2]}},
                                  "search": {"algorithm": "optuna", "metric": "loss"},
                                  "scheduler": {"type": "pbt"}})
    with pytest.raises(UserError, match="scheduler.type: pbt explores values by itself"):
        load_space(path)
    path = _optuna_space(tmp_path, {"metric": ["semseg_miou", "depth_rmse"]}, name="mo")
    raw = yaml.safe_load(path.read_text())
    raw["scheduler"] = {"type": "hyperband"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="hyperband needs one scalar metric"):
        load_space(path)


def test_dry_run_names_sampler_and_scheduler(tmp_path: Path) -> None:
    from mtlsearch.space import describe

    assert "optuna (nsga2 sampler)" in describe(load_space(_optuna_space(
        tmp_path, {"metric": ["semseg_miou", "depth_rmse"], "sampler": "nsga2"})))
    assert "scheduler: hyperband max_t=2 reduction_factor=3" in describe(
        load_space(_grid_space(tmp_path, {"type": "hyperband"})))


# -- tracking -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "match"), [
    (["mlflow", "comet"], "unknown tracker 'comet'"),
    (["mlflow", "mlflow"], "listed twice"),
    ({"mlflow": {"uri": "x"}}, r"mlflow.uri: unknown option"),
    ({"wandb": {"mode": "cloud"}}, "wandb.mode: expected one of"),
    (3, "expected a list of trackers"),
])
def test_bad_tracking_is_refused_with_its_line(tmp_path: Path, value: object, match: str) -> None:
    path = write_space(tmp_path, {"name": "t", "base": tiny_base(),
                                  "space": {"train.lr": {"grid": [0.001]}}, "tracking": value})
    with pytest.raises(UserError, match=rf"line \d+: tracking: .*{match}"):
        load_space(path)


def test_tracking_in_profile_and_options(tmp_path: Path) -> None:
    path = write_space(tmp_path, {
        "name": "t", "base": tiny_base(), "space": {"train.lr": {"grid": [0.001]}},
        "tracking": ["tensorboard"],
        "profiles": {"ml": {"tracking": {"mlflow": {"experiment_name": "x"}, "wandb": None}}},
    })
    assert load_space(path).tracking == {"tensorboard": {}}
    assert load_space(path, "ml").tracking == {"mlflow": {"experiment_name": "x"}, "wandb": {}}


def test_missing_tracker_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from mtlsearch.execution.tracking import check_available

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"tracking: wandb needs the 'wandb' package.*mtlsearch\[wandb\]"):
        check_available({"tensorboard": {}, "wandb": {}})


def test_mlflow_callback_defaults_to_a_local_mlruns_folder(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mtlsearch.execution.tracking import make_callbacks

    (cb,) = make_callbacks({"mlflow": {}}, name="demo", exp_dir=tmp_path / "trials" / "demo", cwd=tmp_path)
    assert type(cb).__name__ == "MLflowLoggerCallback"
    assert cb.tracking_uri == (tmp_path / "mlruns").as_uri() and cb.experiment_name == "demo"


def test_tracking_extras_are_declared() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("mlflow") for r in extras["mlflow"])
    assert any(r.startswith("wandb") for r in extras["wandb"])
    assert any(r.startswith("cmaes") for r in extras["cmaes"])


# -- best / status on a hand-written search ---------------------------------------------------


def test_best_picks_the_best_finished_trial_and_writes_its_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mtlsearch.best import HEADER, best_trials
    from mtlsearch.best import run_cli as best_cli

    folder = make_search(tmp_path)
    (best,), metrics, modes = best_trials(folder)
    assert (best.trial_id, metrics, modes) == ("abcde_00001", ["semseg_miou"], ["max"])
    assert best.values == {"semseg_miou": 45.0} and best.config["train"]["lr"] == pytest.approx(0.002)
    assert best.checkpoint.endswith("abcde_00001/checkpoint_000001/checkpoint.pt")
    (low,), _, modes = best_trials(folder, "depth_rmse")
    assert (low.trial_id, modes) == ("abcde_00002", ["min"])  # direction from the registry
    out = tmp_path / "best.yaml"
    for _ in range(2):  # a second run replaces its own file
        assert best_cli(build_parser().parse_args(["best", str(folder), "--out", str(out)])) == 0
    text = out.read_text()
    assert text.startswith(HEADER + "\n") and "# trial: abcde_00001" in text
    assert load_config(out).train.lr == pytest.approx(0.002)
    assert "checkpoint:" in capsys.readouterr().out


def test_best_pareto_set_for_a_multi_objective_search(tmp_path: Path) -> None:
    from mtlsearch.best import best_trials, targets

    folder = make_search(tmp_path, metric=["semseg_miou", "depth_rmse"], mode=["max", "min"])
    chosen, metrics, _ = best_trials(folder)
    # (30, .6) is dominated by (40, .5); the interrupted and errored trials do not count.
    assert [b.trial_id for b in chosen] == ["abcde_00001", "abcde_00002"]
    again, metrics, _ = best_trials(make_search(tmp_path / "b"), "semseg_miou,depth_rmse")
    assert [b.trial_id for b in again] == ["abcde_00001", "abcde_00002"] and len(metrics) == 2
    paths = targets(tmp_path / "best.yaml", chosen)
    assert [p.name for p in paths] == ["best.yaml", "best.abcde_00002.yaml"]


def test_best_refuses_foreign_files_and_unknown_metrics(tmp_path: Path) -> None:
    from mtlsearch.best import best_trials
    from mtlsearch.best import run_cli as best_cli

    folder = make_search(tmp_path)
    mine = tmp_path / "notes.yaml"
    mine.write_text("my: notes\n")
    with pytest.raises(UserError, match="not written by mtlsearch best"):
        best_cli(build_parser().parse_args(["best", str(folder), "--out", str(mine)]))
    assert mine.read_text() == "my: notes\n"
    with pytest.raises(UserError, match="--metric: no trial .* reported normals_mean_err"):
        best_trials(folder, "normals_mean_err")
    empty = make_search(tmp_path / "e", finished=0)
    with pytest.raises(UserError, match="no finished trial"):
        best_trials(empty)


def test_status_lists_every_trial(tmp_path: Path) -> None:
    from mtlsearch.status import search_state, status_text

    folder = make_search(tmp_path)
    text = status_text(folder)
    assert "5 trial(s) of 5 planned" in text and "3 terminated" in text and "1 error" in text
    assert re.search(r"abcde_00001\s+TERMINATED\s+4\s+2\s+0\.002\s+45\s+2", text)
    assert "boom" in text
    assert search_state(folder) == "unfinished"
    assert search_state(tmp_path / "nothing") == "missing"


def test_search_reuse_keeps_a_finished_search(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mtlsearch.execution.search import run_cli as search_cli

    folder = make_search(tmp_path, finished=3)
    meta = json.loads((folder / "mtlsearch.json").read_text())
    meta["search"]["num_trials"] = 3
    (folder / "mtlsearch.json").write_text(json.dumps(meta))
    for trial in ("abcde_00003", "abcde_00004"):
        for f in (folder / trial).iterdir():
            f.unlink() if f.is_file() else None
        (folder / trial / "params.json").unlink(missing_ok=True)
    space = write_space(tmp_path, {"name": "hand", "base": tiny_base(),
                                   "space": {"train.lr": {"grid": [0.001, 0.002, 0.003]}}})
    args = build_parser().parse_args(["search", str(space), "--storage", str(folder.parent), "--reuse"])
    assert search_cli(args) == 0
    assert "reusing the finished search" in capsys.readouterr().out


# -- plots ------------------------------------------------------------------------------------


def test_loss_plot_separates_base_and_regularizer_losses(tmp_path: Path) -> None:
    import pandas as pd

    from mtlsearch.report.collect import collect
    from mtlsearch.report.plots import loss_curves, split_losses
    from mtlsearch.report.tables import build_table

    curves = pd.DataFrame({"loss_semseg": [1.0, 2.0], "loss_depth": [0.5, None],
                           "loss_render_semseg": [3.0, None], "loss_inter_depth": [1.0, 1.0]})
    split = split_losses(curves, {"semseg": 1.0, "depth": 2.0})
    assert list(split["loss_base"]) == [4.0, 4.0]
    assert split["loss_reg"].iloc[0] == 3.0 and pd.isna(split["loss_reg"].iloc[1])
    search = collect(make_search(tmp_path))
    png = loss_curves(search, build_table(search), tmp_path / "losses.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


# -- reproduce planning ------------------------------------------------------------------------


def test_reproduce_plans_the_shipped_spaces_of_the_chosen_tables() -> None:
    from mtlsearch.reproduce import plan

    assert [p.space_path.name for p in plan("3dmtl", "6")] == ["render_tasks.yaml"]
    assert {p.table for p in plan("3dmtl", "4,7")} == {"3dmtl/table4_aux_heads", "3dmtl/table7_data_fraction"}
    every = {p.space_path.name for p in plan("3dmtl", None)}
    assert {"render_tasks.yaml", "aux_heads.yaml", "data_fraction.yaml"} <= every
    assert {p.table.split("/")[0] for p in plan("cvm", "depth_planes")} == {"crossview_cvm"}
    with pytest.raises(UserError, match="--tables 1: table1_nyuv2_sota has no shipped space"):
        plan("3dmtl", "1")
    with pytest.raises(UserError, match="--tables 9: no table of 3dmtl matches"):
        plan("3dmtl", "9")


def test_reproduce_dry_run_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mtlsearch.reproduce import run_cli

    args = build_parser().parse_args(["reproduce", "3dmtl", "--tables", "6", "--storage", str(tmp_path / "t"),
                                      "--out", str(tmp_path / "r"), "--dry-run"])
    assert run_cli(args) == 0
    assert "render_tasks: missing" in capsys.readouterr().out
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


# -- docs quote the files ------------------------------------------------------------------------


def test_docs_quote_the_cpu_profile() -> None:
    text = (SPACES / "README.md").read_text()
    prof = yaml.safe_load((SPACES / "profiles" / "cpu.yaml").read_text())
    m = re.search(r"`profiles/cpu\.yaml`:(.*?)\n- ", text, re.S)
    assert m, "search_spaces/README.md describes profiles/cpu.yaml"
    quoted = " ".join(m.group(1).split())
    h, w = prof["data.synth.size"]
    assert f"{prof['train.iterations']} iterations" in quoted
    assert f"{prof['data.synth.scenes']}-scene SynthRooms at {h}x{w}" in quoted
    assert f"evaluated every {prof['train.eval_every']}" in quoted
    assert f"{prof['max_concurrent_trials']} trials at a time" in quoted


def test_docs_quote_the_trials_of_every_listed_space() -> None:
    text = (SPACES / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+\.yaml)` \| .*? \| (\S+) \| (\d+)(?: \(paper: (\d+)\))? \|$", text, re.M)
    assert len(rows) >= 15
    for name, paper, cpu, paper_n in rows:
        space = load_space(SPACES / name, "cpu")
        n = space.search.num_samples if space.search.algorithm == "optuna" else space.count_trials()
        assert int(cpu) == n, name
        assert paper == (space.paper or "-"), name
        if paper_n:
            assert int(paper_n) == load_space(SPACES / name, "paper").search.num_samples, name
    demo = load_space(SPACES / "demo.yaml", "cpu")
    assert demo.count_trials() == 4
    assert "2 settings x 2 seeds" in demo.description
    makefile = (ROOT / "Makefile").read_text()
    assert "search_spaces/demo.yaml --profile cpu --reuse" in makefile


def test_docs_quote_the_paper_profile_and_the_search_bench() -> None:
    text = " ".join((SPACES / "README.md").read_text().split())
    prof = yaml.safe_load((SPACES / "profiles" / "paper.yaml").read_text())
    m = re.search(r"`profiles/paper\.yaml`: (.*?)\. - ", text)
    assert m
    quoted = m.group(1)
    its = prof["train.iterations"]
    ramp = int(its * prof["regularizer.alpha.ramp_fraction"])
    assert f"{prof['train.optimizer'].upper()} lr {prof['train.lr']:g}" in quoted
    assert f"batch {prof['train.batch_size']}, {its // 1000}K iterations" in quoted
    assert f"alpha 0 -> {prof['regularizer.alpha.max']:g} over {ramp // 1000}K" in quoted
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"`bench search` \((\d+) trials x (\d+) iterations\)", readme)
    assert m
    args = build_parser().parse_args(["bench", "search"])
    assert (args.trials, args.iterations) == (int(m.group(1)), int(m.group(2)))


def test_wandb_callback_is_offline_unless_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B is not installed here: the callback class is replaced by a recorder."""
    import importlib.util

    import ray.air.integrations.wandb as ray_wandb

    from mtlsearch.execution import tracking

    seen: list[dict] = []
    monkeypatch.setattr(ray_wandb, "WandbLoggerCallback", lambda **kw: seen.append(kw) or kw)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "wandb" else real(name, *a))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    exp = tmp_path / "trials" / "demo"
    tracking.make_callbacks({"wandb": {}}, name="demo", exp_dir=exp, cwd=tmp_path)
    assert seen[-1]["mode"] == "offline" and seen[-1]["project"] == "demo" and seen[-1]["dir"] == str(exp)
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.delenv("WANDB_MODE")
    tracking.make_callbacks({"wandb": {"mode": "online", "project": "p", "entity": "e"}},
                            name="demo", exp_dir=exp, cwd=tmp_path)
    assert (seen[-1]["mode"], seen[-1]["project"], seen[-1]["entity"]) == ("online", "p", "e")
    assert "WANDB_MODE" not in os.environ


# -- baselines and conditions that could never match a planned row ------------------------


@pytest.mark.parametrize(("space", "baseline", "match"), [
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}}, "no such row", r"'no such row' names no planned row: the rows are the values of regularizer\.alpha\.max: 1, 2"),
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}}, "3.0", r"the rows are the values"),
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}, "train.lr": {"grid": [0.001, 0.01]}}, "max=1.0",
     None),
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}, "train.lr": {"grid": [0.001, 0.01]}}, "max=1.0, lr=0.5",
     r"train\.lr takes 0\.001, 0\.01, not 0\.5"),
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}, "train.lr": {"grid": [0.001, 0.01]}}, "depth=1",
     r"depth is not one of the varied keys"),
    ({"regularizer.alpha.max": {"grid": [1.0, 2.0]}, "train.lr": {"grid": [0.001, 0.01]}}, "1.0",
     r"varies several keys: name the row as 'key=value, key=value'"),
])
def test_a_baseline_named_by_its_row_label_must_name_a_planned_row(tmp_path: Path, space: dict, baseline: str,
                                                                   match: str | None) -> None:
    path = write_space(tmp_path, {"name": "b", "base": tiny_base(), "fixed": {"regularizer.enabled": True},
                                  "space": space, "baseline": baseline})
    if match is None:
        assert load_space(path).baseline == baseline
        return
    with pytest.raises(UserError, match=match):
        load_space(path)
    assert load_space(write_space(tmp_path, {"name": "b", "base": tiny_base(), "fixed": {"regularizer.enabled": True},
                                             "space": {"regularizer.alpha.max": {"grid": [1.0, 2.0]}},
                                             "baseline": "2.0"})).baseline == "2.0"


@pytest.mark.parametrize(("body", "match"), [
    ({"space": {"regularizer.alpha.max": {"grid": [1.0, 2.0]}}, "baseline": {"train.lr": "abc"}},
     r"baseline\.train\.lr.*not varied by the space.*varied: regularizer\.alpha\.max"),
    ({"space": {"train.lr": {"loguniform": [1e-4, 1e-2]}}, "baseline": {"train.lr": 0.001},
      "search": {"algorithm": "random", "num_samples": 2}},
     r"train\.lr is drawn from loguniform"),
    ({"fixed": {"regularizer.enabled": True},
      "space": {"regularizer.alpha.schedule": {"grid": ["linear_ramp", "cosine_ramp"]},
                "regularizer.alpha.ramp_fraction": {"grid": [0.25, 0.5],
                                                    "when": {"regularizer.alpha.schedule": ["linear_ramp", "cosine_rmp"]}}}},
     r"cosine_rmp can never match: regularizer\.alpha\.schedule takes linear_ramp, cosine_ramp"),
    ({"fixed": {"regularizer.enabled": True},
      "space": {"regularizer.alpha.max": {"grid": [1.0, 2.0], "when": {"regularizer.alpha.schedule": "cosine_rmp"}}}},
     r"cosine_rmp can never match: .*linear_ramp"),
])
def test_a_baseline_or_condition_that_matches_no_row_is_refused(tmp_path: Path, body: dict, match: str) -> None:
    path = write_space(tmp_path, {"name": "b", "base": tiny_base(), **body})
    with pytest.raises(UserError, match=match):
        load_space(path)
