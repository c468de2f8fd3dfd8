"""A real two-node Ray cluster on this machine: searches that lose a node still finish.

The test starts a head (1 CPU) and a worker node (2 CPUs) with ``ray start``, runs
``mtlsearch search --address`` in a subprocess, kills the worker node's raylet once a
trial running there has written a checkpoint, and checks that every trial ends
TERMINATED, that a trial of the dead node was retried from its checkpoint
(``iterations_since_restore`` restarts while ``iteration`` goes on) and that the
cluster holds no reserved CPU afterwards. It kills only the processes it started
(found by the cluster's own temp folder and ports). Marked ``cluster`` (minutes;
``make test-services``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mtlsearch.execution.peers import free_port
from tests.tiny import tiny_base

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = Path(sys.executable).parent


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process on this machine."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry.name)] = (ppid, cmd)
    return out


def descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in table.items() if pp == parent and p not in found]
        found.update(children)
        frontier.extend(children)
    return found


class LocalCluster:
    """``ray start`` head + worker on this machine, torn down by process id."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        # Short: Ray's Unix sockets live below it (the path limit is 107 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="mtlr-", dir="/tmp"))
        self.port = free_port("127.0.0.1")
        self.worker_nm_port = free_port("127.0.0.1")
        self.address = f"127.0.0.1:{self.port}"
        # Ray 2.60 clusters authenticate clients by token (~/.ray/auth_token by default).
        # The nodes' `python` (a job's entry point runs it) is this environment's, as on a
        # cluster whose nodes activated the project's environment before `ray start`.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("RAY_ADDRESS", None)
        self.pids: set[int] = set()

    def start(self, head_cpus: int = 1, worker_cpus: int = 2) -> None:
        self.dashboard = f"http://127.0.0.1:{free_port('127.0.0.1')}"
        self._run("--head", f"--port={self.port}", f"--num-cpus={head_cpus}",
                  f"--temp-dir={self.temp_dir}", "--include-dashboard=true",
                  "--dashboard-host=127.0.0.1",
                  f"--dashboard-port={self.dashboard.rsplit(':', 1)[1]}")
        self.pids = self._own_pids()
        if worker_cpus:
            self._run(f"--address={self.address}", f"--num-cpus={worker_cpus}",
                      f"--node-manager-port={self.worker_nm_port}")
            self.pids |= self._own_pids()

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "ray"), "start", "--disable-usage-stats", *args],
                              env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]

    def _own_pids(self) -> set[int]:
        table = processes()
        roots = [p for p, (_, cmd) in table.items()
                 if str(self.temp_dir) in cmd or f":{self.port}" in cmd
                 or f"--node_manager_port={self.worker_nm_port}" in cmd]
        return set().union(*(descendants(p, table) for p in roots)) if roots else set()

    def worker_raylet(self) -> int:
        table = processes()
        pids = [p for p, (_, cmd) in table.items()
                if "raylet" in cmd and f"--node_manager_port={self.worker_nm_port}" in cmd]
        assert len(pids) == 1, pids
        return pids[0]

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and everything it started."""
        table = processes()
        for pid in descendants(self.worker_raylet(), table):
            _kill(pid)

    def status(self) -> dict:
        """Resources and placement groups as a fresh driver sees them."""
        script = (
            "import json, ray\n"
            "from ray.util import placement_group_table\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            "pgs = [pg['state'] for pg in placement_group_table().values()]\n"
            "print(json.dumps({'total': ray.cluster_resources().get('CPU', 0),"
            " 'free': ray.available_resources().get('CPU', 0), 'pgs': pgs}))\n"
        )
        out = subprocess.run([sys.executable, "-c", script], env=self.env, capture_output=True,
                             text=True, timeout=120, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def shutdown(self) -> None:
        self.pids |= self._own_pids()
        for pid in self.pids:
            _kill(pid)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cluster(tmp_path: Path):
    c = LocalCluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def head_only(tmp_path: Path):
    c = LocalCluster(tmp_path)
    try:
        c.start(worker_cpus=0)
        yield c
    finally:
        c.shutdown()


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mtlsearch"), *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_address_mistakes_are_one_error_line_within_seconds(head_only: LocalCluster,
                                                             tmp_path: Path) -> None:
    space = tiny_space(tmp_path, iterations=4, gpus=1)
    argv = ["search", str(space), "--storage", str(tmp_path / "trials"), "--dry-run"]
    start = time.time()
    nobody = run_cli([*argv, "--address", "127.0.0.1:1"], head_only.env, tmp_path)
    assert time.time() - start < 30
    assert nobody.returncode == 2 and "Traceback" not in nobody.stderr
    assert nobody.stderr.startswith("error: --address 127.0.0.1:1: no Ray cluster answers")

    no_token = {**head_only.env, "RAY_AUTH_MODE": "disabled"}
    gpus = [*argv, "--address", head_only.address]
    refused = run_cli(gpus, no_token, tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "RAY_AUTH_MODE=token" in refused.stderr and refused.stderr.count("\n") == 1
    token = Path.home() / ".ray" / "auth_token"
    if token.is_file():
        assert token.read_text().strip() not in refused.stderr + refused.stdout

    # With the token: the GPU request is checked against the cluster's resources.
    no_gpu = run_cli(gpus, head_only.env, tmp_path)
    assert no_gpu.returncode == 2 and "Traceback" not in no_gpu.stderr, no_gpu.stderr
    assert "resources.gpus_per_worker" in no_gpu.stderr and "has 0" in no_gpu.stderr


def tiny_space(tmp: Path, iterations: int, gpus: float = 0) -> Path:
    body = {
        "name": "nodes",
        "base": tiny_base(tmp / "cache", eval_every=8, iterations=iterations),
        "space": {"train.lr": {"grid": [0.001, 0.002]}},
        "seeds": [0, 1],
        "search": {"algorithm": "grid", "metric": "loss", "mode": "min", "max_failures": 3},
        "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": gpus},
        "max_concurrent_trials": 3,
    }
    path = tmp / ("gpus.yaml" if gpus else "nodes.yaml")
    path.write_text(yaml.safe_dump(body))
    return path


def rows(folder: Path) -> list[dict]:
    try:
        text = (folder / "result.json").read_text()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_search_survives_a_dead_worker_node(cluster: LocalCluster, tmp_path: Path) -> None:
    space = tiny_space(tmp_path, iterations=80)
    exp = tmp_path / "trials" / "nodes"
    log = (tmp_path / "search.log").open("w")
    driver = subprocess.Popen(
        [str(BIN / "mtlsearch"), "search", str(space), "--storage", str(tmp_path / "trials"),
         "--address", cluster.address],
        cwd=tmp_path, env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        # Wait until a trial running on the worker node has a checkpoint, then kill the node.
        worker_side = descendants(cluster.worker_raylet(), processes())
        deadline = time.time() + 300
        victim = None
        while victim is None and time.time() < deadline:
            assert driver.poll() is None, (tmp_path / "search.log").read_text()[-3000:]
            for folder in exp.glob("*/"):
                done = rows(folder)
                if done and done[-1].get("pid") in worker_side and list(folder.glob("checkpoint_*")):
                    victim = folder
                    break
            worker_side = descendants(cluster.worker_raylet(), processes())
            time.sleep(1)
        assert victim is not None, "no trial reported from the worker node in time"
        cluster.kill_worker_node()
        assert driver.wait(timeout=600) == 0, (tmp_path / "search.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()

    trials = {p.parent.name: p.parent for p in exp.glob("*/params.json")}
    assert len(trials) == 4
    for folder in trials.values():
        assert rows(folder)[-1]["iteration"] == 80, folder.name
    victim_rows = rows(victim)
    restarted = [r for r in victim_rows if r["iterations_since_restore"] < r["training_iteration"]]
    assert restarted, [(r["iteration"], r["iterations_since_restore"]) for r in victim_rows]
    assert restarted[0]["iteration"] > 8  # resumed from a checkpoint, not from scratch
    state = cluster.status()
    assert state["free"] == state["total"] == 1.0, state  # only the head is left, all free
    assert all(s == "REMOVED" for s in state["pgs"]), state


def test_asha_stopping_two_worker_trials_frees_their_placement_groups(
    tmp_path: Path,
) -> None:
    """DDP trials (2 workers each: the trial's process and a peer actor in the trial's
    placement group); when ASHA stops a trial, its group must be freed before the pending
    trials can start, and nothing stays reserved at the end."""
    c = LocalCluster(tmp_path)
    try:
        c.start(head_cpus=3, worker_cpus=0)
        body = yaml.safe_load(tiny_space(tmp_path, iterations=6).read_text())
        body["name"] = "ddp"
        body["base"]["train"]["eval_every"] = 2
        body["space"] = {"train.lr": {"grid": [0.003, 1e-9, 1e-10]}}
        body["seeds"] = [0]
        body["scheduler"] = {"type": "asha", "max_t": 3, "grace_period": 1, "reduction_factor": 2}
        body["resources"] = {"workers": 2, "cpus_per_worker": 0.5}
        body["max_concurrent_trials"] = 2
        space = tmp_path / "ddp.yaml"
        space.write_text(yaml.safe_dump(body))
        start = time.time()
        done = subprocess.run(
            [str(BIN / "mtlsearch"), "search", str(space), "--storage", str(tmp_path / "trials"),
             "--address", c.address],
            cwd=tmp_path, env=c.env, capture_output=True, text=True, timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert time.time() - start < 900
        exp = tmp_path / "trials" / "ddp"
        reports = {p.parent.name: [r["iteration"] for r in rows(p.parent)]
                   for p in exp.glob("*/params.json")}
        assert len(reports) == 3 and all(its for its in reports.values()), reports
        assert any(its[-1] < 6 for its in reports.values()), reports  # ASHA stopped one
        state = c.status()
        assert state["free"] == state["total"] == 3.0, state
        assert all(s == "REMOVED" for s in state["pgs"]), state
    finally:
        c.shutdown()


def test_search_submitted_as_a_ray_job_with_the_project_as_working_dir(tmp_path: Path) -> None:
    """The README's way: `ray job submit --working-dir . --runtime-env-json '{"excludes":
    ["tests/fixtures"]}' -- python -m mtlsearch search ...` (the official fixtures, 118 MB,
    would exceed Ray's 100 MiB upload limit); the driver runs on the head and the trials
    import mtlsearch from the shipped folder."""
    c = LocalCluster(tmp_path)
    project = Path(__file__).resolve().parents[1]
    try:
        c.start(head_cpus=2, worker_cpus=0)
        body = yaml.safe_load(tiny_space(tmp_path, iterations=4).read_text())
        body["name"] = "job"
        body["seeds"] = [0]
        space = tmp_path / "job.yaml"
        space.write_text(yaml.safe_dump(body))
        env = {**c.env, "RAY_API_SERVER_ADDRESS": c.dashboard}
        for _ in range(12):  # the head's job agent may still be starting (a loaded machine)
            done = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--working-dir", str(project),
                 "--runtime-env-json", json.dumps({"excludes": ["tests/fixtures"]}), "--",
                 "python", "-m", "mtlsearch", "search", str(space),
                 "--storage", str(tmp_path / "trials")],
                cwd=project, env=env, capture_output=True, text=True, timeout=600,
            )
            if "No available agent to submit job" not in done.stderr:
                break
            time.sleep(5)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "succeeded" in done.stdout + done.stderr
        exp = tmp_path / "trials" / "job"
        finished = [rows(p.parent) for p in exp.glob("*/params.json")]
        assert len(finished) == 2 and all(r and r[-1]["iteration"] == 4 for r in finished)
    finally:
        c.shutdown()
