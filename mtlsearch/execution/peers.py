"""DDP inside a search trial: the trial's own process is rank 0 and starts N-1 peers.

Contract: :func:`run_group` runs :func:`mtlsearch.train.train_loop_per_worker` on
``workers`` processes joined in one ``torch.distributed`` group (gloo on CPU, NCCL on
GPUs): this process (rank 0: it reports to Tune and writes the checkpoints) and
``workers - 1`` :class:`Peer` actors placed in bundles 1..N-1 of the trial's placement
group (:mod:`mtlsearch.execution.search` asks Tune for one bundle per worker; bundle 0 is the
trial's process). When a trial finishes, its peers wait for the next trial Tune runs in
the same process and placement group (``reuse_actors``: torch and the data are then
already imported); when it fails or a scheduler stops it they are killed, and they die
with the trial's process, their owner, whose placement group Tune removes. A peer that
dies breaks the group's collectives, so rank 0 fails and Tune retries the trial from
its last checkpoint; a peer's own error (a user error, a NaN loss) is raised as rank 0's.
A peer that never joins fails the trial after :data:`mtlsearch.execution.session.JOIN_TIMEOUT`.

Why not a ``TorchTrainer`` per trial: on 2 cores a Train V2 run costs ~14 s to start
(controller, placement group, cleaner, worker group) before the loop runs, and its
placement group outlives a trial Tune stops; here a trial costs the peers' start, once
per trial process (``mtlsearch bench search --workers 2``).
"""

from __future__ import annotations

import socket
from typing import Any

from mtlsearch.records import DDPGroup, LoopConfig


class Peer:
    """Ranks 1..N-1 of a trial's DDP group: a Ray actor that runs the loop once per trial,
    for the trials Tune runs in its owner's process."""

    def run(self, loop_config: LoopConfig) -> None:
        from mtlsearch.train import train_loop_per_worker

        try:
            train_loop_per_worker(loop_config)
        finally:
            _leave_group()


def run_group(loop_config: LoopConfig, workers: int, cpus_per_worker: float,
              gpus_per_worker: float) -> None:
    """Train ``loop_config`` (back end ``tune``) on ``workers`` processes, this one rank 0."""
    import ray
    from ray import tune
    from ray.exceptions import RayTaskError
    from ray.util.placement_group import get_current_placement_group

    from mtlsearch.train import train_loop_per_worker

    pg = get_current_placement_group()
    if pg is None or pg.bundle_count < workers:
        raise RuntimeError(f"a {workers}-worker trial needs a placement group of {workers} "
                           "bundles (mtlsearch.execution.search reserves it)")
    host = ray.util.get_node_ip_address()
    group = {
        "world": workers,
        "address": f"{host}:{free_port()}",
        "backend": "nccl" if gpus_per_worker > 0 else "gloo",
        "checkpoint": tune.get_checkpoint(),
    }
    peers = _peers(pg, workers, cpus_per_worker, gpus_per_worker)
    runs = [peer.run.remote(loop_config.model_copy(update={"ddp": DDPGroup(**group, rank=rank)}))
            for rank, peer in enumerate(peers, start=1)]
    finished = False
    try:
        try:
            train_loop_per_worker(loop_config.model_copy(update={"ddp": DDPGroup(**group, rank=0)}))
            ray.get(runs)
            finished = True
        except Exception:
            _raise_peer_error(runs)  # a peer's own error explains rank 0's broken collective
            raise
    except RayTaskError as err:
        raise (err.cause or err) from None
    finally:
        if not finished:
            _drop_peers()  # possibly stuck in a collective with this rank 0
        _leave_group()


_CACHE: dict[str, Any] = {}
"""This process's peers (``"key"``, ``"peers"``), kept for the next trial Tune runs here."""


def _peers(pg: Any, workers: int, cpus: float, gpus: float) -> list[Any]:
    """The peer actors of bundles 1..N-1 of ``pg``: the previous trial's when Tune reuses
    this process with the same placement group (torch already imported), else new."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    key = (pg.id.hex(), workers, cpus, gpus)
    if _CACHE.get("key") == key:
        return _CACHE["peers"]
    _drop_peers()
    actor = ray.remote(Peer)
    peers = [
        actor.options(
            num_cpus=cpus,
            num_gpus=gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=rank),
            max_restarts=0,
        ).remote()
        for rank in range(1, workers)
    ]
    _CACHE.update(key=key, peers=peers)
    return peers


def _drop_peers() -> None:
    """Kill the cached peers (they also die with this process, their owner)."""
    import ray

    for peer in _CACHE.pop("peers", []):
        ray.kill(peer, no_restart=True)
    _CACHE.pop("key", None)


def _raise_peer_error(runs: list[Any]) -> None:
    """Raise the error of a peer that has already failed, if any (waits up to 2 s)."""
    import ray

    done, _ = ray.wait(runs, num_returns=len(runs), timeout=2.0)
    for ref in done:
        ray.get(ref)


def _leave_group() -> None:
    """Destroy this process's group, so a reused trial process can join the next one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = "") -> int:
    """A TCP port free on ``host`` now ("": every interface, so peers on other nodes reach it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


__all__ = ["Peer", "free_port", "run_group"]
