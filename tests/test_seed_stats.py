"""Seeds as first-class citizens in the reports (issue 22, items 3 and 4): intervals,
tests against the baseline, Holm's correction, the seeds a test would need, and
``best`` / ``status`` / the search summary ranking configurations by their seed mean.

Every test writes synthetic search folders (no Ray) whose true means and spreads, or
exact values, are known, so each figure below can come out wrong.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from mtlsearch.report.collect import collect
from mtlsearch.report.render import (
    stats_frame,
    stats_html,
    stats_latex,
    stats_markdown,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
)
from mtlsearch.report.stats import (
    compare,
    holm,
    normal_n,
    one_sample,
    power_paired,
    power_welch,
    seeds_needed,
    summary,
)
from mtlsearch.report.tables import build_table

KEY = "model.variant"


def write_search(root: Path, rows: dict[str, list[tuple[int, float]]], *, baseline: str | None = None,
                 name: str = "syn", metric: str = "semseg_miou", extra: dict | None = None,
                 configs: bool = False) -> Path:
    """``root/name/``: one finished trial per (row, seed) with ``semseg_miou`` = value (and
    ``extra[row][i]`` metrics for the i-th trial), ``KEY`` = the row's label.
    ``configs``: also write each trial's resolved ``config.yaml`` (for ``mtlsearch best``)."""
    from mtlsearch.config import load_config

    folder = root / name
    folder.mkdir(parents=True)
    meta = {"name": name, "space": {"name": name}, "profile": None, "overrides": [],
            "ablated_keys": [KEY, "train.seed"], "baseline": {KEY: baseline} if baseline else None,
            "search": {"algorithm": "grid", "metric": metric, "mode": "max", "index_key": "trial_index",
                       "num_trials": sum(len(v) for v in rows.values())},
            "tasks": {"semseg": {"weight": 1.0}}, "single_task_baselines": None}
    (folder / "mtlsearch.json").write_text(json.dumps(meta))
    i = 0
    for label, trials in rows.items():
        for k, (seed, value) in enumerate(trials):
            trial = folder / f"abcde_{i:05d}"
            trial.mkdir()
            (trial / "params.json").write_text(json.dumps({"trial_index": i, KEY: label, "train.seed": seed}))
            report = {"iteration": 4, "training_iteration": 1, "semseg_miou": value, "done": True}
            report.update((extra or {}).get(label, [{}] * len(trials))[k])
            (trial / "result.json").write_text(json.dumps(report) + "\n")
            if configs:
                cfg = load_config(None, {"train.seed": seed, "train.lr": 0.001 * (1 + list(rows).index(label))})
                (trial / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(cfg.to_dict()))))
            i += 1
    return folder


# ---------------------------------------------------------------------------
# Intervals
# ---------------------------------------------------------------------------


def test_interval_covers_the_true_mean_95_percent_of_2000_draws() -> None:
    """2000 draws of n = 3 from N(10, 2²): the t interval covers 10 in [0.93, 0.97] of
    them; the z interval (1.96 instead of t(0.975, 2) = 4.303) would cover ~0.83."""
    rng = np.random.default_rng(22)
    draws = rng.normal(10.0, 2.0, size=(2000, 3))
    hits, z_hits = 0, 0
    for row in draws:
        s = summary(row)
        assert (s.n, s.mean) == (3, pytest.approx(row.mean())) and s.std == pytest.approx(row.std(ddof=1))
        assert s.hi - s.mean == pytest.approx(4.302653 * s.std / math.sqrt(3), rel=1e-6)
        hits += s.lo <= 10.0 <= s.hi
        z_hits += abs(s.mean - 10.0) <= 1.959964 * s.std / math.sqrt(3)
    assert 0.93 <= hits / 2000 <= 0.97, hits / 2000
    assert z_hits / 2000 < 0.88  # the test can tell a wrong quantile apart
    assert math.isnan(summary([4.0]).lo) and summary([]).n == 0


def test_table_intervals_cover_the_true_mean_over_2000_rows(tmp_path: Path) -> None:
    """The same through trial folders and ``build_table``: 2000 rows x seeds 0, 1, 2,
    every trial's mIoU drawn from N(40, 3²); the rows' 95% intervals cover 40 in
    [0.93, 0.97] of the rows, and the CSV carries them as columns."""
    rng = np.random.default_rng(7)
    values = rng.normal(40.0, 3.0, size=(2000, 3))
    rows = {f"r{i:04d}": [(s, float(values[i, s])) for s in range(3)] for i in range(2000)}
    t = build_table(collect(write_search(tmp_path, rows)))
    assert len(t.labels) == 2000 and t.tests == 0  # no baseline row: nothing to test against
    cells = [t.cell(lb, "semseg_miou") for lb in t.labels]
    coverage = sum(c.lo <= 40.0 <= c.hi for c in cells) / len(cells)
    assert 0.93 <= coverage <= 0.97, coverage
    first = t.cell("r0000", "semseg_miou")
    want = stats.t.interval(0.95, 2, loc=values[0].mean(), scale=values[0].std(ddof=1) / math.sqrt(3))
    assert (first.lo, first.hi) == (pytest.approx(want[0]), pytest.approx(want[1]))
    csv = pd.read_csv(io.StringIO(to_csv(t)))
    assert csv.loc[0, "semseg_miou_ci_low"] == pytest.approx(want[0])


# ---------------------------------------------------------------------------
# Tests against the baseline
# ---------------------------------------------------------------------------


def test_paired_when_both_rows_ran_the_same_seeds_else_welch(tmp_path: Path) -> None:
    """A seed effect shared by two rows (10, 20, 30): paired, the per-seed differences
    0.5, 0.4, 0.6 give t = 0.5 / (0.1/√3) = 8.66, p = 0.0131; the same values on other
    seeds (or on a subset of the baseline's seeds) must use Welch's test, p = 0.98."""
    base = [(0, 10.0), (1, 20.0), (2, 30.0)]
    shifted = [10.5, 20.4, 30.6]
    folder = write_search(tmp_path, {
        "base": base,
        "paired": [(s, v) for s, v in zip((0, 1, 2), shifted)],
        "other_seeds": [(s, v) for s, v in zip((3, 4, 5), shifted)],
        "subset": [(0, 10.5), (1, 20.4)],
    }, baseline="base")
    t = build_table(collect(folder))
    b = [10.0, 20.0, 30.0]
    paired = t.cell("paired", "semseg_miou").vs
    assert paired.test == "paired" and paired.df == 2
    assert paired.p == pytest.approx(stats.ttest_rel(shifted, b).pvalue)
    assert paired.p == pytest.approx(1 - 8.660254 / math.sqrt(2 + 75), rel=1e-5)  # df 2: p = 1 - t/√(2 + t²)
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert (paired.diff, paired.lo, paired.hi) == (pytest.approx(0.5), pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    other = t.cell("other_seeds", "semseg_miou").vs
    assert other.test == "welch" and other.p == pytest.approx(stats.ttest_ind(shifted, b, equal_var=False).pvalue)
    assert other.p > 0.9 and other.diff == pytest.approx(paired.diff)
    welch_df = (np.var(shifted, ddof=1) / 3 + 100 / 3) ** 2 / (
        (np.var(shifted, ddof=1) / 3) ** 2 / 2 + (100 / 3) ** 2 / 2)
    assert other.df == pytest.approx(welch_df)
    subset = t.cell("subset", "semseg_miou").vs
    assert subset.test == "welch" and subset.p == pytest.approx(
        stats.ttest_ind([10.5, 20.4], b, equal_var=False).pvalue)
    # seeds repeated in a row (two configurations grouped together) cannot pair either
    assert compare([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]).test == "welch"
    # pairs with NaN drop out with their seed before the choice: seeds 0, 1 vs 0, 1 pair
    assert compare([1.0, 2.5, float("nan")], [0, 1, 2], [0.0, 2.0], [0, 1]).test == "paired"
    one = one_sample([1.0, 2.0, 4.0], 0.0)
    assert one.test == "one-sample" and one.p == pytest.approx(stats.ttest_1samp([1, 2, 4], 0).pvalue)


def test_holm_on_a_known_mix_of_real_and_null_differences(tmp_path: Path) -> None:
    """Baseline 10, 11, 12 on seeds 0, 1, 2; each other row adds per-seed differences
    m - 1, m, m + 1 (sd 1): paired t = m√3 with df 2, so p = 1 - t/√(2 + t²) by hand.
    Real: m = 20, 10; small: m = 2; null: m = 0.5, 0. Two tested columns (mIoU and Δm,
    which for one task is mIoU rescaled: the same t), so Holm runs over 10 p-values."""
    base = [10.0, 11.0, 12.0]
    ms = {"real20": 20.0, "real10": 10.0, "small2": 2.0, "null05": 0.5, "null0": 0.0}
    rows = {"base": list(enumerate(base))}
    for label, m in ms.items():
        rows[label] = [(s, b + m + d) for s, b, d in zip(range(3), base, (-1.0, 0.0, 1.0))]
    t = build_table(collect(write_search(tmp_path, rows, baseline="base")))
    assert t.baseline == "base" and t.columns == ["semseg_miou", "delta_m"] and t.tests == 10
    by_hand = {label: 1 - m * math.sqrt(3) / math.sqrt(2 + 3 * m * m) for label, m in ms.items()}
    assert by_hand["small2"] == pytest.approx(0.0742, abs=1e-4) and by_hand["null0"] == 1.0
    for label in ms:
        for col in t.columns:
            vs = t.cell(label, col).vs
            assert vs.test == "paired" and vs.p == pytest.approx(by_hand[label], abs=1e-12), (label, col)
    # Holm by hand over the 10 p-values: sorted, times (10, 9, ..., 1), running max, capped at 1.
    flat = sorted((by_hand[lb], lb, col) for lb in ms for col in t.columns)
    running, adjusted = 0.0, {}
    for k, (p, lb, col) in enumerate(flat):
        running = max(running, min(1.0, (10 - k) * p))
        adjusted[(lb, col)] = running
    for (lb, col), want in adjusted.items():
        assert t.cell(lb, col).vs.p_holm == pytest.approx(want), (lb, col)
    assert adjusted[("real20", "semseg_miou")] == pytest.approx(10 * by_hand["real20"])
    assert adjusted[("small2", "semseg_miou")] == pytest.approx(6 * 0.074180, abs=1e-4)  # raw 0.074 -> 0.45
    significant = {lb for (lb, col), c in t.cells.items() if c.significant}
    assert significant == {"real20", "real10"}  # the real ones; neither the small nor the nulls
    assert holm([0.01, 0.04, 0.03, float("nan"), 0.5])[:3] == pytest.approx([0.04, 0.09, 0.09])
    # Marks in every format: the two real rows only.
    md = to_markdown(t)
    marked = [line.split("|")[1].strip() for line in md.splitlines()[2:8] if "\\*" in line]
    assert marked == ["real10", "real20"]
    assert "\n\\* differs from the baseline row: Holm-adjusted p < 0.05 over the 10 test(s)" in md
    assert to_latex(t).count("$^{*}$") == 4 and to_html(t).count("<sup>*</sup>") == 4
    smd = stats_markdown(t)
    line = next(x for x in smd.splitlines() if x.startswith("| real20 ") and "semseg_miou" in x)
    # 29, 31, 33: 31 ± t(0.975, 2)·2/√3 = 31 ± 4.97; Δ 20 ± t(0.975, 2)·1/√3 = 20 ± 2.48;
    # d = 20: 2 seeds already give 97% power
    p20 = by_hand["real20"]
    assert [c.strip() for c in line.split("|")[3:-1]] == [
        "31.00 [26.03, 35.97]", "+20.00 [17.52, 22.48]\\*", "paired t (3 seeds)", f"{p20:.3g}",
        f"{adjusted[('real20', 'semseg_miou')]:.3g}", "2"]
    assert power_paired(2, 20.0, 1.0) == pytest.approx(0.9735, abs=1e-3)
    assert stats_latex(t).count("$^{*}$") == 4 and stats_html(t).count("<sup>*</sup>") == 4
    csv = pd.read_csv(io.StringIO(to_csv(t)))
    row = csv[csv["label"] == "small2"].iloc[0]
    assert row["semseg_miou_test"] == "paired" and row["semseg_miou_p"] == pytest.approx(by_hand["small2"])
    assert row["semseg_miou_p_holm"] == pytest.approx(adjusted[("small2", "semseg_miou")])
    assert not row["semseg_miou_significant"] and row["semseg_miou_diff"] == pytest.approx(2.0)
    assert row["semseg_miou_n_needed"] == seeds_needed(2.0, 1.0)


def test_type_one_error_of_both_tests_is_five_percent() -> None:
    """No real difference, 2000 independent comparisons each: the raw p < 0.05 in
    [0.035, 0.065] of them, for the paired test (seed effect shared) and for Welch's (3
    seeds vs 4, unequal spreads)."""
    rng = np.random.default_rng(3)
    paired, welch = 0, 0
    for _ in range(2000):
        seed_effect = rng.normal(0, 5, 3)
        a, b = seed_effect + rng.normal(0, 1, 3), seed_effect + rng.normal(0, 1, 3)
        paired += compare(a, [0, 1, 2], b, [0, 1, 2]).p < 0.05
        welch += compare(rng.normal(0, 1, 3), [0, 1, 2], rng.normal(0, 3, 4), [0, 1, 2, 3]).p < 0.05
    assert 0.035 <= paired / 2000 <= 0.065 and 0.035 <= welch / 2000 <= 0.065, (paired, welch)


# ---------------------------------------------------------------------------
# Seeds needed for 80% power
# ---------------------------------------------------------------------------


def _iterated_t(d: float, paired: bool) -> int:
    """n = ((t(0.975, df) + t(0.8, df)) / d)² (x2 for two samples), iterated from the normal n."""
    n = normal_n(d, 1.0 if paired else math.sqrt(2))
    for _ in range(50):
        df = max(n - 1, 1) if paired else max(2 * (n - 1), 1)
        n = (1 if paired else 2) * ((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) / d) ** 2
    return math.ceil(n)


def test_seeds_needed_against_the_formula_and_a_simulation() -> None:
    # Textbook values (Cohen 1988; G*Power): paired d = 0.5, 0.8, 1 -> 34, 15, 10 pairs;
    # two groups with equal spread d = 0.5, 0.8, 1 -> 64, 26, 17 per group.
    assert [seeds_needed(d, 1.0) for d in (0.5, 0.8, 1.0)] == [34, 15, 10]
    assert [seeds_needed(d, 1.0, 1.0) for d in (0.5, 0.8, 1.0)] == [64, 26, 17]
    for d in (0.3, 0.5, 0.8, 1.0, 1.5, 2.5):
        n = seeds_needed(d, 1.0)
        assert n >= math.ceil(normal_n(d, 1.0)) and n <= math.ceil(normal_n(d, 1.0)) + 3
        if d <= 1.5:  # the iterated-t formula is an approximation that fails for n < ~6
            assert abs(n - _iterated_t(d, True)) <= 1, d
        assert power_paired(int(n), d, 1.0) >= 0.8 and (n == 2 or power_paired(int(n) - 1, d, 1.0) < 0.8)
        w = seeds_needed(d, 1.0, 1.0)
        if d <= 1.5:
            assert abs(w - _iterated_t(d, False)) <= 1, d
        assert power_welch(int(w), d, 1.0, 1.0) >= 0.8 and (w == 2 or power_welch(int(w) - 1, d, 1.0, 1.0) < 0.8)
    # Scale-free and sign-free; none for no difference; a cap.
    assert seeds_needed(-3.0, 6.0) == 34 and seeds_needed(0.0, 1.0) == math.inf
    assert seeds_needed(0.01, 1.0) == math.inf and math.isnan(seeds_needed(1.0, 0.0))
    # The power itself, by simulation: 20000 paired experiments at n = 10, d = 1.
    rng = np.random.default_rng(5)
    diffs = rng.normal(1.0, 1.0, size=(20000, 10))
    t_stat = diffs.mean(axis=1) / (diffs.std(axis=1, ddof=1) / math.sqrt(10))
    rate = np.mean(np.abs(t_stat) > stats.t.ppf(0.975, 9))
    assert rate == pytest.approx(power_paired(10, 1.0, 1.0), abs=0.01) and rate >= 0.79
    # scipy's noncentral t lower tail is NaN at df 1, nc = 20·√2 (taken as 0 there, and
    # integrated when anything else is not finite): 2 seeds at d = 20 have 97% power, so
    # 2 seeds are enough (not 3). The fallback integral agrees with the noncentral t.
    from mtlsearch.report.stats import _power_integral

    for df, nc in ((1, 3.0), (2, 5.0), (9, 3.16), (30, 1.0)):
        crit = stats.t.ppf(0.975, df)
        want = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        assert _power_integral(nc, df, crit) == pytest.approx(want, abs=1e-7)
    d2 = rng.normal(20.0, 1.0, size=(20000, 2))
    t2 = d2.mean(axis=1) / (d2.std(axis=1, ddof=1) / math.sqrt(2))
    rate2 = np.mean(np.abs(t2) > stats.t.ppf(0.975, 1))
    assert rate2 == pytest.approx(power_paired(2, 20.0, 1.0), abs=0.005) and seeds_needed(20.0, 1.0) == 2


def test_seeds_needed_in_the_table(tmp_path: Path) -> None:
    """Per-seed differences -1, 1, 3 (mean 1, sd 2: d = 0.5) -> 34 seeds for a paired test;
    on seeds 3, 4, 5 instead, Welch with the rows' own spreads."""
    base = [(0, 10.0), (1, 20.0), (2, 30.0)]
    row = [(0, 9.0), (1, 21.0), (2, 33.0)]
    t = build_table(collect(write_search(tmp_path, {"base": base, "row": row,
                                                    "moved": [(s + 3, v) for s, v in row]}, baseline="base")))
    assert t.cell("row", "semseg_miou").vs.n_needed == 34
    moved = t.cell("moved", "semseg_miou").vs
    assert moved.test == "welch" and moved.n_needed == seeds_needed(1.0, float(np.std([9, 21, 33], ddof=1)), 10.0)
    frame = stats_frame(t)
    line = frame[(frame.iloc[:, 0] == "row") & (frame["metric"] == "semseg_miou ↑")].iloc[0]
    assert line["seeds for 80% power"] == "34" and line["test"] == "paired t (3 seeds)"


# ---------------------------------------------------------------------------
# best, status and the summary rank configurations
# ---------------------------------------------------------------------------


def test_best_is_the_best_mean_not_the_lucky_seed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Configuration A: seeds 9.8 and 8.9 (mean 9.35) holds the best single trial; B: 9.6
    and 9.6 (mean 9.6) is the best configuration."""
    from mtlsearch.best import HEADER, best_trials
    from mtlsearch.best import run_cli as best_cli
    from mtlsearch.cli import build_parser
    from mtlsearch.config import load_config
    from mtlsearch.status import status_text

    folder = write_search(tmp_path / "trials", {"A": [(0, 9.8), (1, 8.9)], "B": [(0, 9.6), (1, 9.6)]},
                          configs=True)
    (best,), metrics, modes = best_trials(folder)
    assert (metrics, modes) == (["semseg_miou"], ["max"])
    assert best.label == f"{KEY}=B" and best.values == {"semseg_miou": pytest.approx(9.6)}
    assert best.seeds == [0, 1] and best.stats["semseg_miou"].n == 2
    assert (best.stats["semseg_miou"].lo, best.stats["semseg_miou"].hi) == (pytest.approx(9.6), pytest.approx(9.6))
    # two seeds lie equally far from their mean: the smaller seed retrains
    assert best.seed == 0 and best.trial_id == "abcde_00002" and best.config["train"]["seed"] == 0
    assert [label for label, _, _ in best.ranking] == [f"{KEY}=B", f"{KEY}=A"]
    a_stats = best.ranking[1][2]["semseg_miou"]
    half = stats.t.ppf(0.975, 1) * np.std([9.8, 8.9], ddof=1) / math.sqrt(2)
    assert (a_stats.mean, a_stats.lo, a_stats.hi) == (pytest.approx(9.35), pytest.approx(9.35 - half),
                                                     pytest.approx(9.35 + half))
    out = tmp_path / "best.yaml"
    assert best_cli(build_parser().parse_args(["best", str(folder), "--out", str(out)])) == 0
    printed = capsys.readouterr().out
    assert f"best configuration of {folder} by semseg_miou (max), mean over seeds:" in printed
    assert f"  {KEY}=B: semseg_miou (max): mean 9.6 ± 0 (95% CI [9.6, 9.6], n=2)" in printed
    assert "retrain seed 0: trial abcde_00002, the trial closest to the configuration's mean" in printed
    assert "1     model.variant=B  2  9.6" in printed and "2     model.variant=A  2  9.35" in printed
    text = out.read_text()
    assert text.startswith(HEADER + "\n") and f"# configuration: {KEY}=B\n" in text
    assert "# retrain seed: 0: the trial closest to the configuration's mean (ties: the smallest seed)" in text
    assert "# trial: abcde_00002\n" in text and "# final metrics: " in text
    assert load_config(out).train.seed == 0 and load_config(out).train.lr == pytest.approx(0.002)
    status = status_text(folder)
    assert "2 configuration(s) of the finished trials, by mean semseg_miou (max) over seeds:" in status
    table = status.split("over seeds:\n")[1].splitlines()
    assert table[2].split()[:5] == ["1", "B", "2", "0,1", "9.6"]
    assert table[3].split()[:6] == ["2", "A", "2", "0,1", "9.35", "0.6364"]


def test_representative_trial_and_summary_lines() -> None:
    from mtlsearch.report.configs import Trial, group, rank, representative, summary_lines

    trials = [Trial(f"t{s}", s, {KEY: "C", "train.seed": s, "trial_index": s}, {"m": v})
              for s, v in enumerate([9.0, 9.5, 9.7])]
    trials += [Trial("u0", 0, {KEY: "D", "train.seed": 0, "trial_index": 3}, {"m": 9.9})]
    configs = group(trials, ["m"])
    assert [c.params for c in configs] == [{KEY: "C"}, {KEY: "D"}] and [c.n for c in configs] == [3, 1]
    c = configs[0]
    assert c.mean("m") == pytest.approx(9.4) and representative(c, ["m"]).trial_id == "t1"  # 9.5 nearest 9.4
    assert [x.params[KEY] for x in rank(configs, ["m"], ["max"])] == ["D", "C"]  # 9.9 (n=1) > 9.4
    lines = summary_lines(trials, ["m"], ["max"])
    assert lines[0] == f"best configuration by mean m (max) over seeds: 9.9 (n=1: no interval) with {KEY}=D"
    assert lines[1].startswith("  runner-up: 9.4 ± 0.3606 (95% CI [8.504, 10.3], n=3) with")


def test_pareto_set_of_configuration_means(tmp_path: Path) -> None:
    """Per trial, A's seed 0 (9.8, 0.50) dominates every trial; per configuration, B's
    means (9.6, 0.50) dominate A's (9.35, 0.55): the Pareto set is B alone."""
    from mtlsearch.best import best_trials

    extra = {"A": [{"depth_rmse": 0.50}, {"depth_rmse": 0.60}], "B": [{"depth_rmse": 0.50}, {"depth_rmse": 0.50}]}
    folder = write_search(tmp_path, {"A": [(0, 9.8), (1, 8.9)], "B": [(0, 9.6), (1, 9.6)]}, extra=extra,
                          configs=True)
    chosen, metrics, modes = best_trials(folder, "semseg_miou,depth_rmse")
    assert (metrics, modes) == (["semseg_miou", "depth_rmse"], ["max", "min"])
    assert [b.label for b in chosen] == [f"{KEY}=B"]
    assert chosen[0].values == {"semseg_miou": pytest.approx(9.6), "depth_rmse": pytest.approx(0.5)}
