"""ASHA on configuration means over seeds (:mod:`mtlsearch.execution.halving`): the rung decisions
on known values, then a real Tune run where a configuration's lucky seed stops with its
unlucky sibling."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from mtlsearch.execution.halving import SeedMeanASHA, config_key, rungs
from mtlsearch.space.spec import INDEX_KEY, SEED_KEY


def _trial(tid: str, cfg: str, seed: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid, config={"cfg": cfg, SEED_KEY: seed, INDEX_KEY: hash(tid) % 7})


def test_rungs_and_configuration_identity() -> None:
    assert rungs(8, 1, 2) == [1, 2, 4]
    assert rungs(9, 1, 3) == [1, 3]
    assert rungs(4, 4, 2) == []
    assert config_key({"a": 1, SEED_KEY: 0, INDEX_KEY: 3}) == config_key({SEED_KEY: 5, "a": 1, INDEX_KEY: 8})
    assert config_key({"a": 1, SEED_KEY: 0}) != config_key({"a": 2, SEED_KEY: 0})


def test_a_configuration_is_judged_on_its_seed_mean_once_all_seeds_reach_the_rung() -> None:
    """A: seeds 10 and 0 (mean 5); B: 4 and 4 (mean 4); C: 6 and 6 (mean 6); rf 2, so a
    configuration continues only at or above the median of those judged before it.
    Tune's per-seed ASHA would stop A's seed at 0 and keep B; here B stops and A goes on."""
    s = SeedMeanASHA(metric="m", mode="max", seeds=2, max_t=4, grace_period=1, reduction_factor=2)
    trials = {(c, k): _trial(f"{c}{k}", c, k) for c in "ABC" for k in (0, 1)}
    for t in trials.values():
        s.on_trial_add(None, t)
    values = {"A": (10.0, 0.0), "B": (4.0, 4.0), "C": (6.0, 6.0)}

    def report(c: str, k: int, it: int) -> str:
        return s.on_trial_result(None, trials[(c, k)], {"training_iteration": it, "m": values[c][k]})

    assert report("A", 0, 1) == "CONTINUE"  # A's other seed has not reached the rung
    assert report("A", 1, 1) == "CONTINUE"  # first configuration judged at rung 1
    assert s.judged[1] == [5.0]
    assert report("B", 0, 1) == "CONTINUE"
    assert report("B", 1, 1) == "STOP"  # mean 4 below the median 5
    assert report("B", 0, 2) == "STOP"  # the sibling stops at its next report
    assert report("C", 0, 1) == "CONTINUE" and report("C", 1, 1) == "CONTINUE"  # 6 >= median(5, 4)
    assert s.judged[1] == [5.0, 4.0, 6.0]
    # rung 2: A judged first, then C (6 >= 5); every trial stops at max_t
    assert report("A", 0, 2) == "CONTINUE" and report("A", 1, 2) == "CONTINUE"
    assert report("C", 1, 2) == "CONTINUE" and report("C", 0, 2) == "CONTINUE"
    assert s.judged[2] == [5.0, 6.0]
    assert report("C", 0, 4) == "STOP" and s.stopped == {config_key(trials[("B", 0)].config)}
    assert "1 stopped" in s.debug_string()


def test_minimisation_and_a_failed_seed() -> None:
    """mode min: smaller is better. A seed that fails leaves its configuration judged on
    the seeds that remain."""
    s = SeedMeanASHA(metric="m", mode="min", seeds=3, max_t=10, grace_period=2, reduction_factor=2)
    a = [_trial(f"a{k}", "A", k) for k in range(3)]
    b = [_trial(f"b{k}", "B", k) for k in range(3)]
    for t in a + b:
        s.on_trial_add(None, t)
    for k, v in enumerate((1.0, 2.0, 3.0)):
        s.on_trial_result(None, a[k], {"training_iteration": 2, "m": v})
    assert s.judged[2] == [-2.0]
    s.on_trial_result(None, b[0], {"training_iteration": 2, "m": 1.5})
    s.on_trial_error(None, b[2])  # B now has two live seeds
    assert s.on_trial_result(None, b[1], {"training_iteration": 2, "m": 2.9}) == "STOP"  # mean 2.2 > 2
    assert s.judged[2] == [-2.0, pytest.approx(-2.2)]


@pytest.mark.slow
def test_a_real_tune_run_stops_a_configuration_with_all_its_seeds(local_ray, tmp_path: Path) -> None:
    """Three configurations x two seeds, run two trials at a time (a configuration's
    seeds together: each waits for its sibling to start), rows in the order C (9, 9), A (10, 0), B (1, 1), rungs 1 and 2 of 4
    evaluations. C runs to the end; A (mean 5 < 9) stops both seeds early, its seed at 10
    too, which per-seed ASHA would have kept (10 > 9); B (mean 1) stops early."""
    import time

    from ray import tune

    rows = [("C", 0, 9.0), ("C", 1, 9.0), ("A", 0, 10.0), ("A", 1, 0.0), ("B", 0, 1.0), ("B", 1, 1.0)]
    marks = tmp_path / "started"
    marks.mkdir()

    def trainable(config: dict) -> None:
        cfg, seed, _ = rows[config[INDEX_KEY]]
        (marks / f"{cfg}{seed}").touch()
        deadline = time.monotonic() + 60
        while not (marks / f"{cfg}{1 - seed}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # a configuration's seeds run side by side (see the contract)
        for it in range(1, 5):
            time.sleep(0.3)
            tune.report({"m": rows[config[INDEX_KEY]][2], "iteration": it})

    class Row:
        def __init__(self, i: int) -> None:
            self.i = i

        def __call__(self, config: dict) -> object:
            return rows[config[INDEX_KEY]][self.i]

    space = {INDEX_KEY: tune.grid_search(list(range(len(rows)))), "cfg": tune.sample_from(Row(0)),
             SEED_KEY: tune.sample_from(Row(1))}
    scheduler = SeedMeanASHA(metric="m", mode="max", seeds=2, max_t=4, grace_period=1, reduction_factor=2)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=2),
        run_config=tune.RunConfig(name="halving", storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    iterations: dict[tuple[str, int], int] = {}
    for result in grid:
        lines = (Path(result.path) / "result.json").read_text().splitlines()
        last = json.loads(lines[-1])
        iterations[(result.config["cfg"], result.config[SEED_KEY])] = last["training_iteration"]
    assert iterations[("C", 0)] == iterations[("C", 1)] == 4
    assert max(iterations[("A", 0)], iterations[("A", 1)]) < 4, iterations
    assert max(iterations[("B", 0)], iterations[("B", 1)]) < 4, iterations
