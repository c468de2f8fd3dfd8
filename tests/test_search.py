"""``mtlsearch search`` through Ray Tune + Train: end to end, resume, Optuna, guards.

The Ray tests are few and tiny; they share one local Ray (the ``ray_session`` fixture of
``tests/conftest.py``: 2 CPUs, and the module's SynthRooms cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlsearch.errors import UserError
from mtlsearch.layout import META_FILE, OPTUNA_DB
from tests.tiny import TINY_BACKBONE, search, tiny_base, write_space


def trial_dirs(exp: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in exp.glob("*/params.json")}


# -- guards (no Ray) ------------------------------------------------------------


def test_existing_search_is_never_overwritten(tmp_path: Path) -> None:
    space = write_space(tmp_path, {"name": "guard", "space": {"data.fraction": {"grid": [0.5, 1.0]}}})
    (tmp_path / "trials" / "guard").mkdir(parents=True)
    with pytest.raises(UserError, match="--resume"):
        search(str(space), "--storage", str(tmp_path / "trials"))
    with pytest.raises(UserError, match="no search"):
        search(str(space), "--storage", str(tmp_path / "other"), "--resume")
    with pytest.raises(UserError, match="mtlsearch.json"):
        search(str(space), "--storage", str(tmp_path / "trials"), "--resume")


def test_dry_run_counts_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    space = write_space(tmp_path, {
        "name": "dry",
        "space": {"data.fraction": {"grid": [0.25, 0.5, 1.0]}},
        "seeds": [0, 1],
    })
    assert search(str(space), "--storage", str(tmp_path / "trials"), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "6 trial(s)" in out and "data.fraction" in out
    assert not (tmp_path / "trials").exists()


# -- Ray: end to end + resume, Optuna ----------------------------------------------


@pytest.mark.slow
def test_grid_search_end_to_end_then_resume(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trials, one errors (its weights file is not a checkpoint); after the file is
    fixed, --resume re-runs only that trial and keeps the finished one untouched."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.pt").write_bytes(b"not a checkpoint")
    space = write_space(tmp_path, {
        "name": "e2e",
        "base": tiny_base(ray_session),
        "space": {"model.pretrained_path": {"grid": ["", "weights.pt"]}},
        "search": {"algorithm": "grid", "metric": "semseg_miou", "mode": "max"},
        "max_concurrent_trials": 2,
    })
    storage = tmp_path / "trials"
    assert search(str(space), "--storage", str(storage)) == 0
    exp = storage / "e2e"
    meta = json.loads((exp / META_FILE).read_text())
    assert meta["ablated_keys"] == ["model.pretrained_path"]
    assert meta["search"]["num_trials"] == 2 and meta["search"]["algorithm"] == "grid"
    assert meta["tasks"]["depth"] == {"weight": 1.0, "metric": "depth_rmse", "mode": "min"}
    trials = trial_dirs(exp)
    assert len(trials) == 2
    by_path = {json.loads((d / "params.json").read_text())["model.pretrained_path"]: d for d in trials.values()}
    good, bad = by_path[""], by_path["weights.pt"]
    error = (bad / "error.txt").read_text()
    assert "weights.pt" in error and "UserError" in error
    # A user error is not retried: it failed once, and says so.
    assert (bad / "fatal_error.txt").is_file()
    rows = [json.loads(line) for line in (good / "result.json").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2, 4]
    assert 0.0 <= rows[-1]["semseg_miou"] <= 100.0 and rows[-1]["depth_rmse"] > 0
    # One-worker trials train in the Tune trial's process: Tune keeps their checkpoints.
    assert sorted(p.name for p in good.glob("checkpoint_*")) == ["checkpoint_000000", "checkpoint_000001"]
    assert (good / "tensorboard").is_dir()
    good_progress = (good / "progress.csv").read_text()

    import timm
    import torch

    torch.save(timm.create_model(TINY_BACKBONE, pretrained=False).state_dict(), tmp_path / "weights.pt")
    assert search(str(space), "--storage", str(storage), "--resume") == 0
    assert set(trial_dirs(exp)) == set(trials)  # same trials, none added
    assert (good / "progress.csv").read_text() == good_progress  # not re-run
    rows = [json.loads(line) for line in (bad / "result.json").read_text().splitlines()]
    assert rows and rows[-1]["iteration"] == 4 and "semseg_miou" in rows[-1]


@pytest.mark.slow
def test_optuna_search_keeps_its_study_in_the_search_folder(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "opt",
        "base": tiny_base(ray_session),
        "space": {
            "train.lr": {"loguniform": [0.0001, 0.01]},
            "train.optimizer": {"choice": ["adam", "sgd"]},
            "train.momentum": {"uniform": [0.5, 0.95], "when": {"train.optimizer": "sgd"}},
        },
        "search": {"algorithm": "optuna", "metric": ["semseg_miou", "depth_rmse"],
                   "mode": ["max", "min"], "num_samples": 2, "seed": 3},
        "max_concurrent_trials": 2,
    })
    storage = tmp_path / "trials"
    assert search(str(space), "--storage", str(storage)) == 0
    exp = storage / "opt"
    assert (exp / OPTUNA_DB).is_file()
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{exp / OPTUNA_DB}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(len(t.values) == 2 for t in done)
    params = [json.loads((d / "params.json").read_text()) for d in trial_dirs(exp).values()]
    assert len(params) == 2
    for p in params:
        assert 0.0001 <= p["train.lr"] <= 0.01
        assert (p["train.momentum"] is None) == (p["train.optimizer"] == "adam")
    meta = json.loads((exp / META_FILE).read_text())
    assert meta["search"]["optuna_storage"].endswith(OPTUNA_DB)
    assert meta["space"]["search"]["algorithm"] == "optuna"


def _wait_for_released_cpus(timeout: float = 30.0) -> tuple[float, float, list]:
    """(available CPU, total CPU, live placement groups) once Ray has freed everything."""
    import time

    import ray
    from ray.util import placement_group_table

    deadline = time.time() + timeout
    while True:
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        live = [pg for pg in placement_group_table().values() if pg["state"] != "REMOVED"]
        if (free == total and not live) or time.time() > deadline:
            return free, total, live
        time.sleep(0.5)


@pytest.mark.slow
def test_asha_stops_trials_while_others_wait_and_frees_everything(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6 trials, room for 2 at a time: ASHA stops the weak ones (a learning rate too small
    to move the loss) while trials are still pending; every trial still ends and Ray
    holds no reserved CPU afterwards (the Train-inside-Tune leak hung this search)."""
    import signal
    import threading
    import time

    monkeypatch.chdir(tmp_path)
    base = tiny_base(ray_session)
    base["train"].update({"iterations": 6, "eval_every": 2, "log_every": 2})
    space = write_space(tmp_path, {
        "name": "asha",
        "base": base,
        "space": {"train.lr": {"grid": [0.003, 1e-9, 1e-10]}},
        "seeds": [0, 1],
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "scheduler": {"type": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2},
        "resources": {"workers": 1, "cpus_per_worker": 1},
        "max_concurrent_trials": 2,
    })
    # A hang fails the test (Tune stops on SIGINT) instead of blocking the suite.
    watchdog = threading.Timer(480, signal.raise_signal, args=(signal.SIGINT,))
    watchdog.start()
    start = time.time()
    try:
        code = search(str(space), "--storage", str(tmp_path / "trials"))
    finally:
        watchdog.cancel()
    elapsed = time.time() - start
    assert code == 0 and elapsed < 480
    exp = tmp_path / "trials" / "asha"
    trials = trial_dirs(exp)
    assert len(trials) == 6
    reports = {}
    for name, folder in trials.items():
        assert not (folder / "error.txt").exists(), (folder / "error.txt").read_text()
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        reports[name] = [r["iteration"] for r in rows]
    stopped = [its for its in reports.values() if its[-1] < 6]
    assert len(stopped) >= 2, reports
    assert all(its == [2, 4, 6][: len(its)] for its in reports.values()), reports
    free, total, live = _wait_for_released_cpus()
    assert free == total and not live, (free, total, live)


@pytest.mark.slow
def test_two_worker_trials_train_as_one_ddp_group_and_free_everything(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``resources.workers: 2``: each trial's process is rank 0 of a gloo group with a peer
    actor in the trial's placement group (the group cannot form without it). Both trials
    finish with checkpoints, report 2 workers, and nothing stays reserved afterwards."""
    monkeypatch.chdir(tmp_path)
    space = write_space(tmp_path, {
        "name": "ddp",
        "base": tiny_base(ray_session),
        "seeds": [0, 1],
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "resources": {"workers": 2, "cpus_per_worker": 1},
        "max_concurrent_trials": 1,
    })
    assert search(str(space), "--storage", str(tmp_path / "trials")) == 0
    trials = trial_dirs(tmp_path / "trials" / "ddp")
    assert len(trials) == 2
    for folder in trials.values():
        assert not (folder / "error.txt").exists(), (folder / "error.txt").read_text()
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [r["iteration"] for r in rows] == [2, 4]
        assert all(r["workers"] == 2 for r in rows)
        assert list(folder.glob("checkpoint_*/checkpoint.pt"))
    free, total, live = _wait_for_released_cpus()
    assert free == total == 2.0 and not live, (free, total, live)


@pytest.mark.slow
def test_a_dead_ddp_peer_fails_its_trial_which_resumes_from_its_checkpoint(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL the peer (rank 1) of a 2-worker trial once the trial has a checkpoint: rank
    0's collective breaks, the trial fails, Tune retries it from that checkpoint with a new
    peer, and it finishes every iteration."""
    import os
    import signal
    import threading
    import time

    import psutil

    monkeypatch.chdir(tmp_path)
    base = tiny_base(ray_session)
    base["train"].update({"iterations": 40, "eval_every": 4, "log_every": 4})
    space = write_space(tmp_path, {
        "name": "peer", "base": base, "seeds": [0],
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
        "resources": {"workers": 2, "cpus_per_worker": 1},
    })
    exp = tmp_path / "trials" / "peer"
    killed: list[int] = []

    def kill_the_peer_after_a_checkpoint() -> None:
        deadline = time.time() + 240
        while not killed and time.time() < deadline:
            if list(exp.glob("*/checkpoint_*/checkpoint.pt")):
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    if "ray::Peer" in " ".join(proc.info["cmdline"] or []):
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed.append(proc.info["pid"])
                        return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_peer_after_a_checkpoint, daemon=True)
    killer.start()
    assert search(str(space), "--storage", str(tmp_path / "trials")) == 0
    killer.join()
    assert killed, "no peer process was found to kill"
    (folder,) = trial_dirs(exp).values()
    failures = (folder / "error.txt").read_text()  # Tune logs each failure, retried or not
    assert failures.count("Failure #") == 1 and "ActorDiedError" in failures and "Peer" in failures
    rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
    assert rows[-1]["iteration"] == 40 and rows[-1]["workers"] == 2
    restarted = [r for r in rows if r["iterations_since_restore"] == 1]
    assert len(restarted) >= 1 and restarted[-1]["iteration"] > 4, [
        (r["iteration"], r["iterations_since_restore"]) for r in rows]
    free, total, live = _wait_for_released_cpus()
    assert free == total and not live, (free, total, live)


@pytest.mark.slow
def test_a_search_that_fails_keeps_its_traceback_in_the_search_folder(
    ray_session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Tune itself failing (as when it could not pickle Optuna 5.1's NSGA-II) is a bug: one
    line naming the exception and ``mtlsearch-error.log`` in the search folder."""
    import re

    import mtlsearch.execution.search as search_module
    from mtlsearch.errors import DEBUG_ENV, set_error_folder
    from mtlsearch.layout import ERROR_LOG

    class Broken:
        def fit(self):
            raise TypeError("cannot pickle '_thread.lock' object")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(search_module, "build_tuner", lambda *a, **k: Broken())
    space = write_space(tmp_path, {
        "name": "broken", "base": tiny_base(ray_session),
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min"},
    })
    try:
        assert search(str(space), "--storage", str(tmp_path / "trials")) == 1
    finally:
        set_error_folder(None)
    err = capsys.readouterr().err
    log = tmp_path / "trials" / "broken" / ERROR_LOG
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert re.fullmatch(r"error: search 'broken' failed: TypeError: cannot pickle .*"
                        + re.escape(f"full traceback in {log};") + ".*", line)
    assert "in fit" in log.read_text() and "Traceback" in log.read_text()
