"""Storage locations (:mod:`mtlsearch.storage`) against a real S3-compatible server.

moto's server mode (how Ray tests its own S3 storage) runs on a free localhost port for
this module and is stopped at teardown; every test gets its own bucket. The end-to-end
test runs a tiny search with ``--storage s3://...`` and reports it from the URI.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtlsearch import storage
from mtlsearch.errors import UserError
from mtlsearch.execution.peers import free_port
from tests.tiny import search, tiny_base, write_space

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a moto S3 server started for this module."""
    from moto.server import ThreadedMotoServer

    port = free_port("127.0.0.1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str) -> str:
    """A new, empty bucket on the server."""
    import pyarrow.fs as pafs

    name = f"b-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(name)
    return name


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    return make_bucket(s3_endpoint)


def uri(endpoint: str, bucket: str, path: str = "trials") -> str:
    return f"s3://{bucket}/{path}?endpoint_override={endpoint}&scheme=http"


# -- parsing, naming (no server) ------------------------------------------------------


def test_local_paths_stay_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = storage.parse("trials")
    assert loc.is_local and loc.local == tmp_path / "trials" and str(loc) == str(tmp_path / "trials")
    assert (loc / "a" / "b").local == tmp_path / "trials" / "a" / "b"
    assert loc.ray_storage() == (str(tmp_path / "trials"), None)
    assert storage.study_path(loc / "s") == tmp_path / "trials" / "s" / "optuna.db"
    url = storage.parse(f"file://{tmp_path}/x")
    assert url.is_local and url.local == tmp_path / "x" and (url / "y").local == tmp_path / "x" / "y"
    assert storage.sync_down(loc) == loc.local


def test_uri_keeps_its_options_when_joined() -> None:
    loc = storage.parse("s3://bucket/trials?endpoint_override=127.0.0.1:9000&scheme=http")
    assert not loc.is_local and loc.path == "bucket/trials" and loc.name == "trials"
    sub = loc / "demo" / "x.json"
    assert sub.path == "bucket/trials/demo/x.json"
    assert sub.uri == "s3://bucket/trials/demo/x.json?endpoint_override=127.0.0.1:9000&scheme=http"
    assert sub.parent.parent == loc and loc.parent.path == "bucket"
    assert storage.parse(sub.uri) == sub  # a joined URI round-trips (workers re-parse it)
    assert sub.key != loc.key and (loc / "demo").key == storage.parse(sub.parent.uri).key
    path, fs = loc.ray_storage()
    assert path == "bucket/trials" and fs is loc.fs
    with pytest.raises(ValueError, match=r"\.\."):
        loc.join("..", "other")


def test_credentials_never_shown() -> None:
    text = "s3://AKIAXXX:topsecret@bucket/t?endpoint_override=127.0.0.1:9&scheme=http"
    assert "topsecret" not in storage.redact(text) and "AKIAXXX" not in storage.redact(text)
    assert storage.redact("s3://b/x?secret_key=hush&region=eu") == "s3://b/x?secret_key=***&region=eu"
    with pytest.raises(UserError) as err:
        storage.parse("s3://AKIAXXX:topsecret@bucket/t?bogus=1&secret_key=hush")
    assert "topsecret" not in str(err.value) and "hush" not in str(err.value)
    assert "bogus" in str(err.value)


@pytest.mark.parametrize("value, match", [
    ("nosuchscheme://bucket/x", "Unrecognized filesystem"),
    ("s3://bucket/x?endpoint_override=127.0.0.1:9&bogus=1", "bogus"),
    ("s3://", "give a bucket"),
])
def test_bad_uris_are_one_user_error(value: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as err:
        storage.open_storage(value, flag="--storage")
    assert str(err.value).startswith("--storage ") and "\n" not in str(err.value)


def test_unreachable_endpoint_is_one_user_error() -> None:
    with pytest.raises(UserError, match="not reachable") as err:
        storage.open_storage(uri(f"127.0.0.1:{free_port('127.0.0.1')}", "bucket"))
    assert "\n" not in str(err.value)


# -- against the S3 server ---------------------------------------------------------------


def test_missing_bucket_is_refused(bucket: str, s3_endpoint: str) -> None:
    storage.open_storage(uri(s3_endpoint, bucket))  # the bucket exists: fine
    with pytest.raises(UserError, match="bucket 'no-such-bucket' not found"):
        storage.open_storage(uri(s3_endpoint, "no-such-bucket"))


def test_read_write_list_exists(bucket: str, s3_endpoint: str) -> None:
    loc = storage.open_storage(uri(s3_endpoint, bucket))
    assert not loc.exists() and loc.listdir() == []
    meta = loc / "demo" / "mtlsearch.json"
    meta.write_text(json.dumps({"name": "demo"}))
    (loc / "demo" / "t1" / "params.json").write_text("{}")
    assert meta.is_file() and not meta.is_dir() and json.loads(meta.read_text()) == {"name": "demo"}
    assert (loc / "demo").is_dir() and loc.exists()
    assert (loc / "demo").listdir() == ["mtlsearch.json", "t1"]
    assert set((loc / "demo").files()) == {"mtlsearch.json", "t1/params.json"}
    meta.write_text("{}")  # overwrite
    assert meta.read_text() == "{}"
    (loc / "demo" / "t1" / "params.json").delete_file()
    assert not (loc / "demo" / "t1" / "params.json").exists()
    with pytest.raises(UserError, match="is a file"):
        storage.open_storage(meta.uri)


def test_upload_and_sync_down_refresh(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "t1").mkdir(parents=True)
    (src / "mtlsearch.json").write_text('{"name": "s"}')
    (src / "t1" / "result.json").write_text("1\n")
    (src / "gone.txt").write_text("x")
    search = storage.open_storage(uri(s3_endpoint, bucket, "trials/s"))
    search.upload(src)
    (search / "extra.txt").upload(src / "gone.txt")
    local = storage.sync_down(search)
    assert local.name == "s" and local.is_relative_to(tmp_path / "cache" / "storage")
    assert (local / "t1" / "result.json").read_text() == "1\n"
    assert (local / "extra.txt").read_text() == "x"
    # Refresh: changed files fetched, vanished ones removed, a user's file kept.
    (search / "t1" / "result.json").write_text("1\n2\n")
    (search / "gone.txt").delete_file()
    (local / "notes.txt").write_text("mine")
    again = storage.sync_down(search)
    assert again == local
    assert (local / "t1" / "result.json").read_text() == "1\n2\n"
    assert not (local / "gone.txt").exists() and (local / "notes.txt").read_text() == "mine"
    # ... and a remote file landing on a file the cache did not write is refused.
    (search / "notes.txt").write_text("remote")
    with pytest.raises(UserError, match="not written by mtlsearch"):
        storage.sync_down(search)
    assert (local / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match="not found"):
        storage.sync_down(storage.parse(uri(s3_endpoint, bucket, "trials/none")))


def test_study_copied_beside_results_and_back(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = storage.open_storage(uri(s3_endpoint, bucket, "trials/opt"))
    db = storage.study_path(search)
    assert db.is_relative_to(tmp_path / "cache" / "studies") and db.name == "optuna.db"
    db.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="opt", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    storage.push_study(db, search)  # while the study's connection is still open
    assert (search / "optuna.db").is_file()
    assert not storage.pull_study(search, db)  # the bucket holds what this driver pushed
    db.unlink()
    assert storage.pull_study(search, db)
    assert not storage.pull_study(search, db)
    time.sleep(1.1)  # S3 keeps whole seconds
    (search / "optuna.db").upload(db)  # another driver pushed since: the bucket wins
    assert storage.pull_study(search, db)
    loaded = optuna.load_study(study_name="opt", storage=f"sqlite:///{db}")
    assert len(loaded.trials) == 3


def test_pickled_study_storage_finds_the_drivers_copy_elsewhere(
    bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune pickles the searcher (with its study storage) into the experiment; resuming
    from another launch folder or machine unpickles it where the driver's copy is now."""
    import pickle

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = storage.open_storage(uri(s3_endpoint, bucket, "trials/moved"))
    (tmp_path / "local").mkdir()
    assert isinstance(storage.study_storage(tmp_path / "local"), optuna.storages.RDBStorage)
    first = storage.study_path(search)
    first.parent.mkdir(parents=True)
    backend = storage.study_storage(search)
    assert type(backend).__name__ == "DriverStudyStorage" and str(first) in backend.url
    study = optuna.create_study(study_name="moved", storage=backend)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    storage.push_study(first, search)
    state = pickle.dumps(study)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "elsewhere"))
    moved = storage.study_path(search)
    assert moved != first and storage.pull_study(search, moved)
    first.unlink()
    restored = pickle.loads(state)
    assert len(restored.trials) == 2
    restored.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert not first.exists() and len(optuna.load_study(
        study_name="moved", storage=f"sqlite:///{moved}").trials) == 3


def test_ray_accepts_the_pair(bucket: str, s3_endpoint: str) -> None:
    """Ray's own storage resolution keeps the endpoint options of the pair."""
    from ray.train._internal.storage import StorageContext

    loc = storage.open_storage(uri(s3_endpoint, bucket))
    path, fs = loc.ray_storage()
    ctx = StorageContext(storage_path=path, experiment_dir_name="exp", storage_filesystem=fs)
    assert ctx.experiment_fs_path == f"{bucket}/trials/exp"
    assert (loc / "exp").exists()  # Ray wrote its validation marker through our endpoint
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"


# -- end to end: a search on S3, its report, an Optuna study resumed from the URI ----------


@pytest.fixture(scope="module")
def ray_s3(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray for the module, started with the S3 credentials in its environment
    (its workers inherit them); yields the SynthRooms cache folder."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        for key, value in CREDENTIALS.items():
            mp.setenv(key, value)
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        try:
            yield tmp_path_factory.mktemp("synth-cache")
        finally:
            ray.shutdown()


@pytest.mark.slow
@pytest.mark.s3
def test_search_report_and_resume_on_s3(
    ray_s3: Path, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    import pandas as pd

    from mtlsearch.report import build_report

    monkeypatch.chdir(tmp_path)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(storage.CACHE_ENV, str(tmp_path / "cache"))
    bucket = make_bucket(s3_endpoint)
    trials = uri(s3_endpoint, bucket)

    # A grid search of 2 trials into the bucket, then its report from the URI.
    grid = write_space(tmp_path, {
        "name": "s3grid",
        "base": tiny_base(ray_s3),
        "space": {"train.lr": {"grid": [0.01, 0.001]}},
        "search": {"algorithm": "grid", "metric": "semseg_miou", "mode": "max"},
        "max_concurrent_trials": 2,
    })
    assert search(str(grid), "--storage", trials) == 0
    exp = storage.parse(trials) / "s3grid"
    assert json.loads((exp / "mtlsearch.json").read_text())["search"]["num_trials"] == 2
    params = [name for name in exp.files() if name.endswith("/params.json")]
    assert len(params) == 2
    assert not (tmp_path / "s3:").exists() and not (tmp_path / bucket).exists()  # nothing local
    report = build_report(exp.uri, out=tmp_path / "report", samples=False, formats=["md"])
    results = pd.read_parquet(tmp_path / "report" / "results.parquet")
    assert len(results) == 2 and set(results["status"]) == {"TERMINATED"}
    assert results["final_semseg_miou"].notna().all()
    assert report.search.path.is_relative_to(tmp_path / "cache" / "storage")

    # An Optuna search: its study is kept by the driver, copied beside the results, and
    # --resume works from the URI alone (the driver's copy is gone).
    opt = write_space(tmp_path, {
        "name": "s3opt",
        "base": tiny_base(ray_s3),
        "space": {"train.lr": {"loguniform": [0.0001, 0.01]}},
        "search": {"algorithm": "optuna", "metric": "semseg_miou", "mode": "max",
                   "num_samples": 2, "seed": 1},
        "max_concurrent_trials": 2,
    })
    assert search(str(opt), "--storage", trials) == 0
    exp = storage.parse(trials) / "s3opt"
    assert (exp / "optuna.db").is_file()
    driver_db = storage.study_path(exp)
    driver_db.unlink()
    assert search(str(opt), "--storage", trials, "--resume") == 0
    assert driver_db.is_file()  # brought back from the bucket
    study = optuna.load_study(study_name="s3opt", storage=f"sqlite:///{driver_db}")
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2
    assert len([n for n in exp.files() if n.endswith("/params.json")]) == 2


# -- the commands refuse a bad URI before data or Ray; dry runs write nothing -----------------


def test_commands_refuse_bad_storage_before_data_or_ray(
    bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import mtlsearch.execution.cluster
    from mtlsearch.cli import build_parser
    from mtlsearch.execution.trainer import run_cli as train_cli
    from mtlsearch.report import build_report

    def no_ray(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(mtlsearch.execution.cluster, "connect", no_ray)
    monkeypatch.chdir(tmp_path)
    synth = tmp_path / "synth"
    space = write_space(tmp_path, {
        "name": "guard",
        "base": tiny_base(synth),
        "space": {"train.lr": {"loguniform": [0.0001, 0.01]}},
        "search": {"algorithm": "optuna", "metric": "semseg_miou", "mode": "max", "num_samples": 2},
    })
    missing = uri(s3_endpoint, "missing-bucket")
    with pytest.raises(UserError, match="bucket 'missing-bucket' not found"):
        search(str(space), "--storage", missing)
    with pytest.raises(UserError, match="Unrecognized filesystem"):
        search(str(space), "--storage", "nosuchscheme://b/trials")
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(tiny_base(synth)))
    with pytest.raises(UserError, match="missing-bucket"):
        train_cli(build_parser().parse_args(["train", str(config), "--storage", missing]))
    with pytest.raises(UserError, match="^SEARCH .*missing-bucket"):
        build_report(f"s3://missing-bucket/trials/x?endpoint_override={s3_endpoint}&scheme=http")
    assert not synth.exists()

    trials = uri(s3_endpoint, bucket)
    with pytest.raises(UserError, match="no search in s3://"):
        search(str(space), "--storage", trials, "--resume")
    assert search(str(space), "--storage", trials, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"results would go to: s3://{bucket}/trials/guard?endpoint_override=" in out
    assert "copied to s3://" in out and str(tmp_path / "cache" / "studies") in out
    assert storage.parse(trials).listdir() == [] and not synth.exists()
