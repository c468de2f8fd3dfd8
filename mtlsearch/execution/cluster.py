"""Connecting to Ray: a local instance with its dashboard on localhost, or a cluster.

Contract:

* :func:`check_address` runs before any long work (data generation, Ray start): an
  address nobody answers at is a :class:`UserError` within seconds, not Ray's minutes
  of retries.
* :func:`connect` starts (or joins) Ray once per process. Locally the dashboard is
  started, bound to ``127.0.0.1`` unless ``dashboard_host`` says otherwise: Ray
  Train's placement-group cleaner and the State API need it, and users get Ray's
  dashboard, whose address is printed. Joining a cluster maps Ray's authentication
  failures to one ``error:`` line that says how to pass the token (never printing it).
* Ray's own repeated warnings are kept off the terminal (``log_to_driver`` stays on,
  so trial output is still shown; Ray's logger is raised to ERROR).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator

from mtlsearch.errors import UserError

CONNECT_TIMEOUT_S = 5.0
TOKEN_HELP = (
    "set RAY_AUTH_MODE=token and give the cluster's token with RAY_AUTH_TOKEN_PATH=<file> "
    "(default ~/.ray/auth_token, written on the head node) or RAY_AUTH_TOKEN"
)


def parse_address(address: str) -> tuple[str, int] | None:
    """``host:port`` of a GCS address (``None`` for ``auto`` and ``ray://`` client URLs)."""
    if address == "auto" or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address: expected HOST:PORT (e.g. 127.0.0.1:6379), got {address!r}")
    return host, int(port)


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address where no Ray head listens (a TCP connect, seconds at most)."""
    if not address:
        return
    target = parse_address(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({reason}); start one with "
            "`ray start --head` and pass the address it prints, or drop --address to run locally"
        ) from None


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 (C++ and Python) to a temporary file for the block; the
    yielded list holds what was written once the block is left."""
    sys.stderr.flush()
    saved = os.dup(2)
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


RAY_ENV = {
    "RAY_DEDUP_LOGS": "1",
    "RAY_TRAIN_ENABLE_CONTROLLER_STRUCTURED_LOGGING": "0",
    # Worker processes start slowly on a busy small machine (torch imports while other
    # trials train); Train's 60 s default would abort and retry their start.
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600",
}
"""Set before Ray starts or is joined, in every command (Ray's repeated warnings off the
terminal; patient worker starts)."""
TUNE_ENV = {"RAY_AIR_NEW_OUTPUT": "0"}
"""Set by ``mtlsearch search``: Tune's trial table (``CLIReporter``) rather than Ray's new output."""
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
"""Set for the ``TorchTrainer`` runs of :func:`mtlsearch.execution.trainer.make_trainer` (read by
``.fit()``): the controller polls its workers every 0.5 s rather than Ray's 2 s, so a
finished run is seen sooner (``mtlsearch bench search --workers 2``: teardown 3.5 s ->
1.3-1.5 s per trial) and a dead worker is noticed sooner too."""


def set_env(env: dict[str, str]) -> None:
    """Apply Ray settings; a user's own setting of any of them wins. This module is the
    one place mtlsearch sets Ray's environment."""
    for key, value in env.items():
        os.environ.setdefault(key, value)


def quiet_ray_logs() -> None:
    """Keep Ray's repeated warnings (State API, deprecations) off the user's terminal."""
    set_env(RAY_ENV)
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard: bool = True,
) -> str | None:
    """Start or join Ray (once per process); return the dashboard URL, if any."""
    import ray

    if ray.is_initialized():
        return None
    quiet_ray_logs()
    # Inside `ray job submit` the job's cluster is in RAY_ADDRESS; otherwise a run
    # without --address starts its own local instance, whatever else runs here.
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    if address:
        check_address(address)
        # Ray's core prints a warning line per retry (about 20 s of them) for a refused
        # client: keep them off the terminal and read them for the cause instead.
        with _captured_stderr() as captured:
            try:
                context = ray.init(address=address, logging_level=logging.ERROR)
                err = None
            except Exception as caught:  # Ray raises several types for a refused client
                err = caught
        if err is not None:
            text = f"{type(err).__name__}: {err}"
            first = text.splitlines()[0] if text else type(err).__name__
            core = "".join(captured)
            if "uthenticat" in text or "token" in text.lower() or "InvalidAuthToken" in core:
                raise UserError(f"--address {address}: {TOKEN_HELP}") from None
            if os.environ.get("RAY_AUTH_MODE") != "token":
                raise UserError(
                    f"--address {address}: cannot join the cluster ({first}); if it was started "
                    f"with `ray start` (token authentication by default), {TOKEN_HELP}"
                ) from None
            raise UserError(f"--address {address}: cannot join the cluster ({first})") from None
    else:
        context = ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            dashboard_host=dashboard_host,
            logging_level=logging.ERROR,
        )
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url and "://" not in url else url


def check_gpus(
    per_worker: float, workers: int, address: str | None, *, dry_run: bool = False
) -> str | None:
    """Refuse a GPU request the cluster (or this machine) cannot ever satisfy, instead of
    leaving its trials pending forever. Joins the cluster at ``address`` to read it.

    A local ``--dry-run`` only returns a note (the plan may be meant for a cluster)."""
    if per_worker <= 0:
        return None
    if address:
        import ray

        connect(address)
        have = float(ray.cluster_resources().get("GPU", 0.0))
        where = f"the cluster at {address}"
    else:
        import torch

        have = float(torch.cuda.device_count())
        where = "this machine"
    need = per_worker * max(workers, 1)
    if have >= need:
        return None
    message = (
        f"resources.gpus_per_worker: {workers} worker(s) x {per_worker} GPU need {need:g} "
        f"GPU(s), but {where} has {have:g}"
    )
    if dry_run and not address:
        return f"note: {message}; run it on a cluster with --address, or set resources.gpus_per_worker=0"
    raise UserError(f"{message}; set resources.gpus_per_worker=0 to train on CPUs")


__all__ = ["CONNECT_TIMEOUT_S", "check_address", "check_gpus", "connect", "parse_address", "quiet_ray_logs"]
