"""mtlsearch report on a real (tiny) Ray Tune experiment with known metric values.

The trainable reports deterministic numbers per (regularizer.tasks, seed), so every
aggregate below is checked against values worked out by hand.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mtlsearch.errors import UserError
from mtlsearch.report import build_report, parse_formats
from mtlsearch.report.collect import collect, error_summary, read_json_lines
from mtlsearch.report.papers import (
    direction_of,
    get_table,
    ordering_agreement,
    values_equal,
)
from mtlsearch.report.plots import pareto_front
from mtlsearch.report.render import to_markdown
from mtlsearch.report.tables import build_table

NAME = "abl"
SEEDS = (0, 1, 2)
# regularizer.tasks -> (semseg offset, depth offset, edge offset)
OFFSETS = {"semseg": (5.0, 0.01, 5.0), "depth": (2.0, 0.03, 2.0), "all": (4.5, 0.015, 4.0)}


def finals(key: str, seed: int) -> dict[str, float]:
    """The last reported values of a trial (what the trainable below reports last)."""
    so, do, eo = OFFSETS[key]
    return {
        "semseg_miou": 40 + so + seed,
        "depth_rmse": 0.5 - do + 0.01 * seed,
        "normals_mean_err": 20 + 0.1 * seed,
        "edge_odsf": 70 + eo,
    }


META = {
    "name": NAME,
    "space_path": "search_spaces/test_render_tasks.yaml",
    "space": {"name": NAME},
    "profile": None,
    "overrides": [],
    "ablated_keys": ["regularizer.tasks", "train.seed"],
    "baseline": {"regularizer.tasks": ["semseg"]},
    "paper": "3dmtl/table6_render_tasks",
    "search": {"algorithm": "grid"},
    "tasks": {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0},
    "single_task_baselines": None,
}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, local_ray) -> Path:
    """A real Tune experiment: 3 task settings x 3 seeds, the (depth, seed 2) trial fails
    after its first report."""
    from ray import tune

    offsets = dict(OFFSETS)

    def trainable(config: dict) -> None:
        tasks, seed = config["regularizer.tasks"], config["train.seed"]
        key = "+".join(tasks) if isinstance(tasks, list) else tasks
        so, do, eo = offsets[key]
        s_fin, d_fin = 40 + so + seed, 0.5 - do + 0.01 * seed
        s_curve = [s_fin - 1, s_fin + 1, s_fin]
        d_curve = [d_fin + 0.02, d_fin - 0.01, d_fin]
        for i in range(3):
            if key == "depth" and seed == 2 and i == 1:
                raise RuntimeError("synthetic failure: depth seed 2")
            tune.report({
                "iteration": 10 * (i + 1), "loss": 3.0 - i, "loss_semseg": 1.0 - 0.1 * i,
                "semseg_miou": s_curve[i], "depth_rmse": d_curve[i],
                "normals_mean_err": 20 + 0.1 * seed, "edge_odsf": 70 + eo,
            })

    root = tmp_path_factory.mktemp("trials")
    tuner = tune.Tuner(
        trainable,
        param_space={
            "regularizer.tasks": tune.grid_search([["semseg"], ["depth"], "all"]),
            "train.seed": tune.grid_search(list(SEEDS)),
        },
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name=NAME, storage_path=str(root), verbose=0),
    )
    tuner.fit()
    (root / NAME / "mtlsearch.json").write_text(json.dumps(META))
    return root / NAME


@pytest.fixture(scope="module")
def report(experiment: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("reports") / NAME
    return build_report(experiment, out=out)


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return m, s


# ---------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------


def test_tune_state_through_public_apis(experiment: Path, capsys: pytest.CaptureFixture) -> None:
    """Statuses come from Tune's public ExperimentAnalysis (report) and ResultGrid
    (the search's summary line), not from Tune's private attributes or state files."""
    from types import SimpleNamespace

    from ray.tune import ExperimentAnalysis, ResultGrid

    from mtlsearch.execution.search import summarize, trial_statuses
    from mtlsearch.report.collect import read_tune_state

    state, note = read_tune_state(experiment)
    assert note is None and len(state) == 9
    with pytest.MonkeyPatch.context() as mp:  # `mtlsearch report trials/demo`: a relative folder
        mp.chdir(experiment.parent)
        assert read_tune_state(Path(experiment.name)) == (state, None)
    assert sorted(s["status"] for s in state.values()) == ["ERROR"] + ["TERMINATED"] * 8
    assert {s["relative_logdir"] for s in state.values()} == {
        p.name for p in experiment.iterdir() if (p / "params.json").is_file()}
    results = ResultGrid(ExperimentAnalysis(str(experiment)))
    assert sorted(trial_statuses(results).values()) == ["ERROR"] + ["TERMINATED"] * 8
    space = SimpleNamespace(search=SimpleNamespace(metric="semseg_miou", mode="max",
                                                   multi_objective=False))
    assert summarize(results, experiment, space) == (8, 1)
    out = capsys.readouterr().out
    # The configuration, not the lucky trial (semseg, seed 2: 47): semseg's seeds 45, 46, 47,
    # mean 46 ± 1, 95% CI 46 ± t(0.975, 2)/√3 = 46 ± 2.484; runner-up all: 45.5 ± 1.
    assert "8 finished, 1 errored" in out
    assert ("best configuration by mean semseg_miou (max) over seeds: 46 ± 1 (95% CI [43.52, 48.48], n=3) "
            "with regularizer.tasks=[semseg]\n") in out
    assert "  runner-up: 45.5 ± 1 (95% CI [43.02, 47.98], n=3) with regularizer.tasks=all\n" in out


def test_trial_statuses_without_tune_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No readable Tune state: no statuses (the summary then counts every trial without
    an error as finished) and one warning line, not a traceback."""
    from types import SimpleNamespace

    pytest.importorskip("ray")
    from mtlsearch.execution.search import trial_statuses

    assert trial_statuses(SimpleNamespace(experiment_path=str(tmp_path), filesystem=None)) == {}
    err = capsys.readouterr().err
    assert err.startswith("warning: cannot read the trials' statuses back") and err.count("\n") == 1


def test_results_parquet_one_row_per_trial(report, experiment: Path) -> None:
    res = pd.read_parquet(report.out / "results.parquet")
    assert len(res) == 9
    assert sorted(res["status"]) == ["ERROR"] + ["TERMINATED"] * 8
    err = res[res["status"] == "ERROR"].iloc[0]
    assert err["regularizer.tasks"] == "depth" and err["seed"] == 2
    assert "RuntimeError: synthetic failure: depth seed 2" in err["error"]
    assert set(res["regularizer.tasks"]) == {"semseg", "depth", "all"}
    ok = res[res["status"] == "TERMINATED"]
    for _, row in ok.iterrows():
        want = finals(row["regularizer.tasks"], int(row["seed"]))
        for key, value in want.items():
            assert row[f"final_{key}"] == pytest.approx(value)
        # best by direction: semseg peaks at the 2nd report (+1), depth dips there (-0.01)
        assert row["best_semseg_miou"] == pytest.approx(want["semseg_miou"] + 1)
        assert row["best_depth_rmse"] == pytest.approx(want["depth_rmse"] - 0.01)
        assert row["iterations"] == 30 and row["reports"] == 3
        assert row["wall_time_s"] > 0
        assert row["best_loss"] == 1.0 and row["final_loss"] == 1.0  # losses: lower is better
    # values equal the trials' own result.json
    tdir = experiment / ok.iloc[0]["trial_dir"]
    rows, bad = read_json_lines(tdir / "result.json")
    assert bad == 0 and ok.iloc[0]["final_semseg_miou"] == rows[-1]["semseg_miou"]


def test_curves_parquet_one_row_per_report(report) -> None:
    curves = pd.read_parquet(report.out / "curves.parquet")
    assert len(curves) == 8 * 3 + 1  # the failed trial reported once
    one = curves[(curves["regularizer.tasks"] == "all") & (curves["seed"] == 1)]
    assert list(one["iteration"]) == [10, 20, 30]
    assert list(one["semseg_miou"]) == pytest.approx([44.5, 46.5, 45.5])


def test_truncated_line_interrupted_trial_and_no_state(experiment: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / NAME
    shutil.copytree(experiment, copy)
    res = collect(copy).results
    victim = res[(res["regularizer.tasks"] == "all") & (res["seed"] == 0)].iloc[0]
    result_json = copy / victim["trial_dir"] / "result.json"
    lines = result_json.read_text().splitlines()
    result_json.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    ghost = copy / "trainable_abcde_00099_99_regularizer_tasks=edge,train_seed=0_2026-01-01"
    ghost.mkdir()
    (ghost / "params.json").write_text(json.dumps({"regularizer.tasks": ["edge"], "train.seed": 0}))

    search = collect(copy)
    res = search.results
    assert len(res) == 10
    row = res[res["trial_id"] == victim["trial_id"]].iloc[0]
    assert row["reports"] == 2 and row["final_semseg_miou"] == pytest.approx(45.5)  # 2nd report
    ghost_row = res[res["trial_id"] == "abcde_00099"].iloc[0]
    assert ghost_row["status"] == "RUNNING" and ghost_row["reports"] == 0  # files just written
    monkeypatch.setattr("mtlsearch.report.collect.RECENT_S", 0.0)
    assert collect(copy).results.set_index("trial_id").loc["abcde_00099", "status"] == "INTERRUPTED"
    assert any("unreadable result line" in n for n in search.notes)
    table = build_table(search)
    assert table.n["edge"] == 1 and table.cell("edge", "semseg_miou").n == 0

    for state in copy.glob("experiment_state-*.json"):
        state.unlink()
    res = collect(copy).results
    statuses = dict(zip(res["trial_id"], res["status"]))
    assert list(statuses.values()).count("ERROR") == 1
    assert set(statuses.values()) == {"ERROR", "INTERRUPTED"}  # no done: true lines


# ---------------------------------------------------------------------------
# The ablation table
# ---------------------------------------------------------------------------


def test_seeds_aggregated_by_hand(report) -> None:
    t = report.table
    assert t.group_keys == ["regularizer.tasks"]
    assert t.labels == ["semseg", "all", "depth"]  # baseline first
    assert t.baseline == "semseg"
    assert t.n == {"semseg": 3, "all": 3, "depth": 2} and t.failed["depth"] == 1
    for label, seeds in (("semseg", SEEDS), ("all", SEEDS), ("depth", (0, 1))):
        for key in ("semseg_miou", "depth_rmse", "normals_mean_err", "edge_odsf"):
            mean, std = _mean_std([finals(label, s)[key] for s in seeds])
            cell = t.cell(label, key)
            assert cell.n == len(seeds)
            assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(std, abs=1e-9)
    assert t.cell("depth", "semseg_miou").std == pytest.approx(math.sqrt(0.5))


def test_best_in_bold_and_tests_against_the_baseline(report) -> None:
    from scipy import stats

    t = report.table
    best = {col: [lb for lb in t.labels if t.cell(lb, col).best] for col in t.columns}
    assert best["semseg_miou"] == ["semseg"]  # 46 (up)
    assert best["depth_rmse"] == ["depth"]  # 0.475 (down)
    assert best["normals_mean_err"] == ["depth"]  # 20.05 (down)
    assert best["edge_odsf"] == ["semseg"]  # 75 (up)
    # all vs semseg: the same seeds 0, 1, 2 -> paired; every per-seed difference is the
    # same (-0.5 mIoU, -0.005 RMSE, 0 normals, -1 edge), so no t statistic: not tested.
    for col in t.columns:
        vs = t.cell("all", col).vs
        if col in ("delta_m_st",):
            continue
        assert vs.test == "paired" and math.isnan(vs.p) and "no spread" in vs.reason, col
    assert t.cell("all", "semseg_miou").vs.diff == pytest.approx(-0.5)
    # depth (seeds 0, 1; seed 2 failed) vs semseg (0, 1, 2): Welch, p straight from scipy
    want = {
        "semseg_miou": ([42, 43], [45, 46, 47]),
        "depth_rmse": ([0.47, 0.48], [0.49, 0.50, 0.51]),
        "normals_mean_err": ([20.0, 20.1], [20.0, 20.1, 20.2]),
    }
    for col, (a, b) in want.items():
        vs = t.cell("depth", col).vs
        assert vs.test == "welch" and vs.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
        assert vs.diff == pytest.approx(sum(a) / 2 - sum(b) / 3)
    assert t.cell("depth", "edge_odsf").vs.reason == "no spread in either row"  # 72, 72 vs 75 x3
    # delta_m: depth's seeds 0, 1 give -1.59 ∓ 0.081 (every metric moves with the seed and
    # the terms nearly cancel), the baseline's 0 ± 0.081: Welch, p from scipy.
    ids = {lb: [i for i in t.trial_ids[lb] if i in t.trial_delta_m] for lb in t.labels}
    dm = {lb: [t.trial_delta_m[i] for i in ids[lb]] for lb in t.labels}
    assert t.cell("depth", "delta_m").vs.p == pytest.approx(
        stats.ttest_ind(dm["depth"], dm["semseg"], equal_var=False).pvalue)
    # Holm over the 4 tests (depth: semseg, depth, normals, delta_m), by hand:
    # k-th smallest of m = 4 -> max over j <= k of min(1, (4 - j + 1) p_(j)).
    assert t.tests == 4
    cols = ["delta_m", "semseg_miou", "depth_rmse", "normals_mean_err"]
    raw = sorted((t.cell("depth", c).vs.p, c) for c in cols)
    assert [c for _, c in raw] == cols  # delta_m 0.00017 < semseg 0.021 < depth 0.05 < normals 0.6
    running = 0.0
    for k, (p_raw, col) in enumerate(raw):
        running = max(running, min(1.0, (4 - k) * p_raw))
        assert t.cell("depth", col).vs.p_holm == pytest.approx(running), col
    assert raw[0][0] == pytest.approx(1.7e-4, rel=0.05) and raw[1][0] == pytest.approx(0.0213, abs=5e-4)
    # Only depth's delta_m survives (4 x 0.00017); semseg's 0.021 becomes 3 x 0.021 = 0.064.
    assert [(lb, c) for (lb, c), cell in t.cells.items() if cell.significant] == [("depth", "delta_m")]
    md = to_markdown(t)
    assert "| **46.00 ± 1.00** |" in md
    assert " 45.50 ± 1.00 |" in md and " -1.59 ± 0.06\\* |" in md
    assert [line for line in md.splitlines() if line.startswith("| ") and "\\*" in line] == [
        line for line in md.splitlines() if line.startswith("| depth ")]
    assert "\n\\* differs from the baseline row: Holm-adjusted p < 0.05 over the 4 test(s)" in md
    assert "semseg_miou ↑" in md and "depth_rmse ↓" in md and "Δm (%) ↑" in md


def test_delta_m_against_baseline_by_hand(report) -> None:
    t = report.table
    base = {"semseg_miou": 46.0, "depth_rmse": 0.50, "normals_mean_err": 20.1, "edge_odsf": 75.0}
    per_seed = []
    for s in SEEDS:
        f = finals("all", s)
        per_seed.append((
            (f["semseg_miou"] - 46.0) / 46.0
            - (f["depth_rmse"] - 0.50) / 0.50
            - (f["normals_mean_err"] - 20.1) / 20.1
            + (f["edge_odsf"] - 75.0) / 75.0
        ) / 4 * 100)
    mean, std = _mean_std(per_seed)
    cell = t.cell("all", "delta_m")
    assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(std)
    assert base and t.cell("semseg", "delta_m").mean == pytest.approx(0.0, abs=1e-9)
    res = pd.read_parquet(report.out / "results.parquet")
    row = res[(res["regularizer.tasks"] == "all") & (res["seed"] == 0)].iloc[0]
    assert row["delta_m_vs_baseline"] == pytest.approx(per_seed[0])


def test_single_task_baselines_and_baseline_option(experiment: Path, tmp_path: Path) -> None:
    copy = tmp_path / NAME
    shutil.copytree(experiment, copy)
    meta = dict(META, baseline=None, single_task_baselines={"semseg_miou": 40.0, "depth_rmse": 0.5})
    (copy / "mtlsearch.json").write_text(json.dumps(meta))
    search = collect(copy)
    t = build_table(search)
    assert t.baseline is None and "single-task" in t.baseline_note
    want = [((45 + s - 40) / 40 - (0.49 + 0.01 * s - 0.5) / 0.5) / 2 * 100 for s in SEEDS]
    assert t.cell("semseg", "delta_m").mean == pytest.approx(sum(want) / 3)
    row = search.results[(search.results["regularizer.tasks"] == "semseg") & (search.results["seed"] == 1)]
    assert row["delta_m"].iloc[0] == pytest.approx(want[1])
    t2 = build_table(search, baseline="all")
    assert t2.baseline == "all" and t2.labels[0] == "all"
    # With a row baseline, delta_m vs the single-task baselines (the papers' delta_m)
    # stays beside it, and is what the published delta_m is compared with.
    assert t2.columns[-2:] == ["delta_m", "delta_m_st"]
    assert t2.cell("semseg", "delta_m_st").mean == pytest.approx(sum(want) / 3)
    assert t2.cell("all", "delta_m").mean == pytest.approx(0.0, abs=1e-9)
    assert build_table(search, baseline="tasks=depth").baseline == "depth"
    with pytest.raises(UserError, match=r"--baseline 'nope' names no row \(rows: all, depth, semseg"):
        build_table(search, baseline="nope")
    with pytest.raises(UserError, match="--group-by model.backbone"):
        build_table(search, group_by=["model.backbone"])
    by_seed = build_table(search, group_by=["regularizer.tasks", "train.seed"])
    assert by_seed.group_keys == ["regularizer.tasks"]


def test_written_formats(report) -> None:
    out = report.out
    tex = (out / "table.tex").read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}"):
        assert rule in tex
    assert "\\textbf{46.00 $\\pm$ 1.00}" in tex and "$^\\dagger$" not in tex
    stats_tex = tex.split("% Statistics against the baseline\n")[1]
    assert stats_tex.count("\\begin{table}") == 1 and "depth & semseg\\_miou $\\uparrow$ & 42.50 [36.15, 48.85] & -3.50 [" in stats_tex
    assert "semseg\\_miou $\\uparrow$" in tex and "depth\\_rmse $\\downarrow$" in tex
    csv = pd.read_csv(out / "table.csv")
    assert list(csv["label"]) == ["semseg", "all", "depth"]
    assert csv.loc[0, "semseg_miou_mean"] == pytest.approx(46.0)
    assert bool(csv.loc[0, "semseg_miou_best"]) and "semseg_miou_within_noise" not in csv.columns
    assert list(csv["semseg_miou_test"].fillna("")) == ["", "paired", "welch"]
    assert math.isnan(csv.loc[1, "semseg_miou_p"]) and csv.loc[1, "semseg_miou_not_tested"] == "no spread in the per-seed differences"
    assert csv.loc[2, "semseg_miou_p"] == pytest.approx(report.table.cell("depth", "semseg_miou").vs.p)
    # 95% interval of depth's mean of 42, 43: 42.5 ± t(0.975, 1) * 0.7071 / √2 = 42.5 ± 6.353
    assert (csv.loc[2, "semseg_miou_ci_low"], csv.loc[2, "semseg_miou_ci_high"]) == (
        pytest.approx(42.5 - 6.3531, abs=1e-3), pytest.approx(42.5 + 6.3531, abs=1e-3))
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "<style>" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "synthetic failure" in page
    assert (out / "table.md").read_text().startswith(f"## {NAME}: ablation table")
    assert "### Statistics against the baseline" in (out / "table.md").read_text()
    assert "<h2>Statistics against the baseline</h2>" in page and "class='stats'" in page


def test_paper_table_beside_ours(report) -> None:
    cmp = report.comparison
    assert [(p, lb) for p, lb, _ in cmp.pairs] == [("semseg", "semseg"), ("depth", "depth"), ("all", "all")]
    assert cmp.unmatched_paper == ["normals", "edge"]
    # paper semseg_miou: semseg 55.04 > all 54.87 > depth 54.62; ours 46 > 45.5 > 42.5
    assert cmp.ordering["semseg_miou"]["agree"] == 3 and cmp.ordering["semseg_miou"]["tau"] == pytest.approx(1.0)
    # paper depth_rmse: all < semseg < depth; ours depth < all < semseg: 1 of 3 pairs agree
    assert cmp.ordering["depth_rmse"]["agree"] == 1 and cmp.ordering["depth_rmse"]["pairs"] == 3
    md = (report.out / "table.md").read_text()
    assert "### Published: 3dmtl/table6_render_tasks" in md
    assert "| semseg | semseg | 55.04 / **46.00 ± 1.00** |" in md
    assert "semseg_miou: 3/3 row pairs ordered as in the paper (Kendall tau +1.00)" in md


def test_plots_are_valid_pngs(report) -> None:
    plots = report.out / "plots"
    names = {p.name for p in plots.glob("*.png")}
    assert {"learning_curves.png", "pareto_semseg_miou_vs_depth_rmse.png", "param_importance.png"} <= names
    for p in plots.glob("*.png"):
        with Image.open(p) as img:
            img.verify()
        with Image.open(p) as img:
            assert img.format == "PNG" and img.size[0] > 100
    imp = report.importances["importances"]
    assert set(imp) == {"regularizer.tasks", "train.seed"}
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp["regularizer.tasks"] > imp["train.seed"]
    assert any("no checkpoint" in n for n in report.notes)


def test_sample_predictions_of_best_trial(experiment: Path, report, tmp_path: Path) -> None:
    import torch

    from mtlsearch.config import load_config
    from mtlsearch.models import build_model

    copy = tmp_path / NAME
    shutil.copytree(experiment, copy)
    # The best row by mean delta_m is the baseline semseg (0; all -0.36, depth -1.59); its
    # trial at that mean is seed 1 (45, 0.50, 20.1, 75: delta_m exactly 0), not its
    # luckiest seed.
    res = report.search.results
    best = res[(res["regularizer.tasks"] == "semseg") & (res["seed"] == 1)]["trial_id"].item()
    assert report.table.trial_delta_m[best] == pytest.approx(0.0, abs=1e-9)
    cfg = load_config(None, {
        "data.synth.scenes": 3, "data.synth.views": 2, "data.synth.size": [32, 48],
        "data.synth.val_fraction": 0.34, "data.synth.cache_dir": str(tmp_path / "synth"),
        "data.crop_size": [32, 48], "model.decoder_width": 8, "regularizer.enabled": True,
        "regularizer.triplane_width": 8, "regularizer.hidden": 8, "regularizer.samples_per_ray": 4,
    })
    ckpt = copy / "_train" / best / "checkpoint_000001" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(), "step": 1}, ckpt)
    rep = build_report(copy, out=tmp_path / "out", formats=["html"])
    assert rep.search.results.set_index("trial_id").loc[best, "checkpoint"] == str(ckpt)
    png = tmp_path / "out" / "plots" / "samples_best_trial.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 500
    assert any(n.startswith(f"trial {best}: sample predictions of 2 validation") for n in rep.notes)
    assert "Sample predictions of the best trial" in (tmp_path / "out" / "report.html").read_text()


def test_data_fraction_plot_and_default_tie_break(experiment: Path, tmp_path: Path) -> None:
    copy = tmp_path / NAME
    shutil.copytree(experiment, copy)
    fraction = {"semseg": 1.0, "depth": 0.5, "all": 0.25}
    for params in copy.glob("*/params.json"):
        p = json.loads(params.read_text())
        key = "+".join(p["regularizer.tasks"]) if isinstance(p["regularizer.tasks"], list) else p["regularizer.tasks"]
        params.write_text(json.dumps({"data.fraction": fraction[key], "train.seed": p["train.seed"]}))
    meta = dict(META, ablated_keys=["data.fraction", "train.seed"], baseline={"data.fraction": 1.0},
                paper="3dmtl/table7_data_fraction")
    (copy / "mtlsearch.json").write_text(json.dumps(meta))
    rep = build_report(copy, out=tmp_path / "out", formats=["md"])
    assert (tmp_path / "out" / "plots" / "data_fraction.png").is_file()
    assert not (tmp_path / "out" / "report.html").exists()
    assert rep.table.labels == ["1.0", "0.25", "0.5"]
    # regularizer.enabled is not known: the config default (False) picks the plain rows
    assert [(p, lb) for p, lb, _ in rep.comparison.pairs] == [
        ("InvPT 100%", "1.0"), ("InvPT 50%", "0.5"), ("InvPT 25%", "0.25")]


# ---------------------------------------------------------------------------
# CLI, errors, atomic writes
# ---------------------------------------------------------------------------


def test_cli_prints_table_and_user_errors(experiment: Path, tmp_path: Path, capsys) -> None:
    from mtlsearch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", str(experiment), "--out", str(tmp_path / "r"), "--format", "md,csv"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| regularizer\.tasks +\| +semseg_miou ↑ \|", out, re.M) and "wrote" in out
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        ".mtlsearch-report", "curves.parquet", "plots", "results.parquet", "table.csv", "table.md"]
    for argv, message in (
        (["report", str(tmp_path / "missing")], "search folder not found"),
        (["report", str(tmp_path / "r" / "plots")], "is not a search folder"),
        (["report", str(experiment), "--group-by", "nope.key"], "--group-by nope.key"),
        (["report", str(experiment), "--format", "md,pdf"], "--format 'pdf'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_failure_midway_keeps_previous_report(experiment: Path, tmp_path: Path, monkeypatch) -> None:
    import mtlsearch.report as report_mod

    out = tmp_path / "rep"
    build_report(experiment, out=out, formats=["md"])
    before = (out / "table.md").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "to_latex", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(experiment, out=out, formats=["md", "tex"])
    assert (out / "table.md").read_text() == before and not (out / "table.tex").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


# ---------------------------------------------------------------------------
# Small pure pieces
# ---------------------------------------------------------------------------


def test_pareto_front_by_hand() -> None:
    # (semseg up, depth down): (2, 0.5) dominates (1, 1) and (1.5, 2); (0.5, 0.4) has the best depth
    pts = [(1.0, 1.0), (2.0, 0.5), (1.5, 2.0), (0.5, 0.4)]
    assert pareto_front(pts, ("max", "min")) == [False, True, False, True]


def test_papers_and_helpers() -> None:
    t6 = get_table("3dmtl/table6_render_tasks")
    assert t6.rows["semseg"]["semseg_miou"] == 55.04 and t6.verified
    assert not get_table("crossview_cvm/ablation_num_views").verified
    with pytest.raises(UserError, match="unknown paper table '3dmtl/table9'"):
        get_table("3dmtl/table9")
    assert direction_of("render_depth_rmse") == "min" and direction_of("best_semseg_miou") == "max"
    assert direction_of("delta_m") == "max" and direction_of("final_loss_semseg") == "min"
    assert direction_of("alpha") is None
    assert values_equal("0.5", 0.5) and values_equal("True", True) and not values_equal("1.0", 0.5)
    assert values_equal("semseg+depth", ["semseg", "depth"])
    assert values_equal("semseg+depth", "all", ["semseg", "depth"])
    agree = ordering_agreement([1.0, 2.0, 3.0], [10.0, 30.0, 20.0])
    assert agree["pairs"] == 3 and agree["agree"] == 2 and agree["tau"] == pytest.approx(1 / 3)
    assert parse_formats("md, tex") == ["md", "tex"]
    text = "Failure # 1 (occurred at x)\n\x1b[36mray::f()\x1b[39m\n  File 'a.py'\nValueError: bad value\n"
    assert error_summary(text) == "ValueError: bad value"


# ---------------------------------------------------------------------------
# --out never deletes what the report did not write (hand-made search, no Ray)
# ---------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _report_cli(argv: list[str], capsys) -> tuple[int, str]:
    from mtlsearch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["report", *argv, "--format", "md"])
    return exc.value.code, capsys.readouterr().err


def test_out_new_folder_then_replaces_only_its_own_report(tmp_path: Path, capsys) -> None:
    from tests.searchdirs import make_search

    search = make_search(tmp_path / "trials")
    out = tmp_path / "reports" / "hand"
    code, _ = _report_cli([str(search), "--out", str(out)], capsys)
    assert code == 0 and (out / "table.md").is_file()
    marker = json.loads((out / ".mtlsearch-report").read_text())
    assert marker["kind"] == "report" and "table.md" in marker["files"]
    (out / "table.md").write_text("stale")
    code, _ = _report_cli([str(search), "--out", str(out)], capsys)
    assert code == 0 and (out / "table.md").read_text() != "stale"
    assert sorted(p.name for p in out.parent.iterdir()) == ["hand"]  # nothing left beside it
    # A file the user added to the report folder is never deleted: refused, untouched.
    (out / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    code, err = _report_cli([str(search), "--out", str(out)], capsys)
    assert code == 2 and "notes.txt" in err and "refusing" in err and err.count("\n") == 1
    assert _tree(tmp_path) == before


def test_out_refuses_folders_it_did_not_write(tmp_path: Path, capsys) -> None:
    from tests.searchdirs import make_search

    search = make_search(tmp_path / "trials")
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("\\documentclass{article}")
    afile = tmp_path / "results.txt"
    afile.write_text("keep")
    other_kind = tmp_path / "synth"
    other_kind.mkdir()
    (other_kind / ".mtlsearch-synthrooms").write_text(json.dumps(
        {"tool": "mtlsearch", "kind": "synthrooms", "files": []}))
    link = tmp_path / "link"
    link.symlink_to(thesis)
    cases = [
        (thesis, "not an mtlsearch report"),
        (afile, "is a file"),
        (afile / "sub", "is a file"),
        (other_kind, "synthrooms output, not a report"),
        (link, "symbolic link"),
        (search, "is the search folder"),
        (search / "a0000_00000", "inside the search folder"),
        (search / "new", "inside the search folder"),
        (search.parent, "contains the search folder"),
        (tmp_path, "contains the search folder"),
    ]
    before = _tree(tmp_path)
    for out, message in cases:
        code, err = _report_cli([str(search), "--out", str(out)], capsys)
        assert code == 2 and message in err and err.startswith("error: --out"), (out, err)
        assert _tree(tmp_path) == before, out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _ = _report_cli([str(search), "--out", str(empty)], capsys)
    assert code == 0 and (empty / "table.md").is_file()


def test_corrupt_search_metadata_is_one_error_line(tmp_path: Path, capsys) -> None:
    from tests.searchdirs import make_search

    search = make_search(tmp_path / "trials")
    meta = search / "mtlsearch.json"
    good = json.loads(meta.read_text())
    for content in (b"{not json", b"\xff\xfe\x00", json.dumps([1, 2]).encode(),
                    json.dumps({**good, "ablated_keys": 5}).encode(),
                    json.dumps({**good, "name": "../../escape"}).encode(),
                    json.dumps({**good, "search": "grid"}).encode(),
                    json.dumps({**good, "tasks": ["semseg"]}).encode()):
        meta.write_bytes(content)
        code, err = _report_cli([str(search), "--out", str(tmp_path / "r")], capsys)
        assert code == 2 and "mtlsearch.json" in err and err.count("\n") == 1, (content, err)
    assert not (tmp_path / "r").exists()


def test_importance_from_the_search_study_read_only(tmp_path: Path) -> None:
    import hashlib

    import optuna

    from tests.searchdirs import make_search

    search = make_search(tmp_path / "trials", trials=6)
    meta = json.loads((search / "mtlsearch.json").read_text())
    meta["search"] = {"algorithm": "optuna"}
    (search / "mtlsearch.json").write_text(json.dumps(meta))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="hand", storage=f"sqlite:///{search / 'optuna.db'}",
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("a", 0, 1) + 0.1 * t.suggest_float("b", 0, 1), n_trials=8)
    before = hashlib.sha256((search / "optuna.db").read_bytes()).hexdigest()
    rep = build_report(search, out=tmp_path / "rep", formats=["md"], samples=False)
    assert rep.importances is not None and rep.importances["source"].startswith("Optuna study hand")
    assert hashlib.sha256((search / "optuna.db").read_bytes()).hexdigest() == before


def test_out_replaces_a_report_written_before_markers(tmp_path: Path, capsys) -> None:
    from tests.searchdirs import make_search

    search = make_search(tmp_path / "trials")
    old = tmp_path / "old"
    (old / "plots").mkdir(parents=True)
    for name in ("results.parquet", "table.md", "plots/learning_curves.png"):
        (old / name).write_text("old")
    (old / "notes.txt").write_text("mine")
    code, err = _report_cli([str(search), "--out", str(old)], capsys)
    assert code == 2 and "not an mtlsearch report" in err and (old / "notes.txt").read_text() == "mine"
    (old / "notes.txt").unlink()
    code, _ = _report_cli([str(search), "--out", str(old)], capsys)
    assert code == 0 and (old / ".mtlsearch-report").is_file() and (old / "table.md").read_text() != "old"


# ---------------------------------------------------------------------------
# Rendering through pandas (hand-made search, no Ray)
# ---------------------------------------------------------------------------


def _hand_search(tmp_path: Path, fail: tuple[str, ...] = ("a0003_00003",)):
    """make_search's 4 trials (semseg/all x seeds 0, 1), baseline semseg, ``fail`` failed."""
    from tests.searchdirs import make_search

    folder = make_search(tmp_path / "trials")
    meta = json.loads((folder / "mtlsearch.json").read_text())
    (folder / "mtlsearch.json").write_text(json.dumps(dict(meta, baseline="semseg")))
    for trial in fail:
        (folder / trial / "error.txt").write_text("Failure # 1\nValueError: bad | worse\n")
    return collect(folder)


def test_renderers_keep_marks_rows_and_rules(tmp_path: Path) -> None:
    from mtlsearch.report.render import to_csv, to_html, to_latex, trials_html, trials_markdown

    search = _hand_search(tmp_path)
    t = build_table(search)
    assert t.labels == ["semseg", "all"] and t.n == {"semseg": 2, "all": 1} and t.failed["all"] == 1
    md = to_markdown(t).splitlines()
    assert re.fullmatch(r"\| regularizer\.tasks +\| +semseg_miou ↑ \| +depth_rmse ↓ \| +Δm \(%\) ↑ \| +n \| +failed \|", md[0])
    assert re.fullmatch(r"\|:-+\|(-+:\|){5}", md[1])
    assert md[2].startswith("| semseg (baseline) ") and md[3].startswith("| all ")
    # semseg: 42, 44 -> 43 ± 1.41; all: seed 0 only (43): one seed, so no test and no mark;
    # depth 0.48 everywhere: a tie (both bold); delta_m of the baseline's trials:
    # ±(1/43)/2 -> 0.00 ± 1.64, of all's: 0.00
    assert [c.strip() for c in md[2].split("|")[2:-1]] == [
        "**43.00 ± 1.41**", "**0.4800 ± 0.0000**", "**0.00 ± 1.64**", "2", "0"]
    assert [c.strip() for c in md[3].split("|")[2:-1]] == ["**43.00**", "**0.4800**", "**0.00**", "1", "1"]
    assert md[5].startswith("Mean ± std over seeds") and md[-1] == "1 failed trial(s) not aggregated  "
    assert "Nothing tested: every comparison lacks 2 seeds on a side or any spread.  " in md
    assert t.tests == 0 and t.cell("all", "semseg_miou").vs.reason == "fewer than 2 seeds in a row"
    tex = to_latex(t, caption="hand_search: 5% off").splitlines()
    assert tex[0] == "% requires \\usepackage{booktabs}"
    assert tex[tex.index("\\toprule") + 1].startswith("regularizer.tasks & semseg\\_miou $\\uparrow$")
    rows = tex[tex.index("\\toprule") + 3:tex.index("\\bottomrule")]
    assert rows[0].startswith("semseg (baseline) & \\textbf{43.00 $\\pm$ 1.41} & ") and rows[1] == "\\midrule"
    assert rows[2] == "all & \\textbf{43.00} & \\textbf{0.4800} & \\textbf{0.00} & 1 \\\\"
    caption = next(line for line in tex if line.startswith("\\caption{hand\\_search: 5\\% off. Mean $\\pm$ std"))
    assert "Nothing tested" in caption
    page = to_html(t)
    assert page.count('class="data row0') == page.count("baseline\" >") == 6  # the baseline row's cells
    assert "<b>0.00</b></td>" in page and "<sup>" not in page and "semseg <i>(baseline)</i>" in page
    assert "<p class='legend'>Mean ± std" in page
    back = pd.read_csv(io.StringIO(to_csv(t)))
    assert list(back["label"]) == ["semseg", "all"] and list(back["baseline"]) == [True, False]
    assert back.loc[0, "semseg_miou_std"] == pytest.approx(math.sqrt(2)) and math.isnan(back.loc[1, "semseg_miou_std"])
    trials = trials_markdown(search)
    assert trials.count("ValueError: bad \\| worse") == 1 and len(trials.splitlines()) == 2 + 4
    html_trials = trials_html(search)
    assert html_trials.count("status-ERROR") == 1 and html_trials.count("status-TERMINATED") == 3
    assert "ValueError: bad | worse" in html_trials and "td.col5 {\n  text-align: left;" in html_trials


def test_report_page_and_markdown_have_one_trials_table(tmp_path: Path) -> None:
    search = _hand_search(tmp_path)
    rep = build_report(search.path, out=tmp_path / "rep", formats=["md", "html"], samples=False)
    md = (tmp_path / "rep" / "table.md").read_text()
    assert md.count("### Trials") == 1 and md.count("ValueError: bad \\| worse") == 1
    page = (tmp_path / "rep" / "report.html").read_text()
    assert page.count("<h2>Trials</h2>") == 1 and page.count('id="T_trials"') == 1
    assert page.count("ValueError: bad | worse") == 1 and "td.baseline{background" in page
    assert rep.markdown == md


def test_row_without_finished_trials_gets_empty_cells(tmp_path: Path) -> None:
    """Every trial of a row failed while the others have a stored delta_m: the row shows
    dashes (n 0), it does not break the table."""
    search = _hand_search(tmp_path, fail=("a0001_00001", "a0003_00003"))
    search.meta.baseline = None
    search.meta.single_task_baselines = {"semseg_miou": 40.0, "depth_rmse": 0.5}
    search.results["delta_m"] = [2.0, float("nan"), 3.0, float("nan")]
    t = build_table(search)
    assert t.columns[-1] == "delta_m" and t.n == {"all": 0, "semseg": 2}
    assert t.cell("all", "delta_m").n == 0 and t.cell("semseg", "delta_m").mean == pytest.approx(2.5)
    assert "| all " in to_markdown(t) and to_markdown(t).count("—") == 3


def test_reproduce_effects_carry_an_interval_and_a_test(report) -> None:
    """``reproduce.md``'s effects against the table's first paired row (semseg): depth's
    two seeds (0, 1; seed 2 failed) against semseg's three by Welch's test; 'all' is
    0.5 below semseg on every seed, so a paired test has no spread to work with."""
    import numpy as np
    from scipy import stats as sps

    from mtlsearch.reproduce import _effects

    lines = {line.split(":", 1)[0]: line for line in _effects(report)}
    depth = lines["depth vs semseg, semseg_miou"]
    a, b = [42.0, 43.0], [45.0, 46.0, 47.0]
    se = math.sqrt(np.var(a, ddof=1) / 2 + np.var(b, ddof=1) / 3)
    df = se ** 4 / ((np.var(a, ddof=1) / 2) ** 2 / 1 + (np.var(b, ddof=1) / 3) ** 2 / 2)
    half = sps.t.ppf(0.975, df) * se
    assert f"ours -3.5 [{-3.5 - half:+.3g}, {-3.5 + half:+.3g}], welch test" in depth
    assert sps.ttest_ind(a, b, equal_var=False).pvalue < 0.05  # raw; Holm may still not resolve it
    assert "paper -0.42: same sign" in depth
    assert "not tested (no spread in the per-seed differences)" in lines["all vs semseg, semseg_miou"]
