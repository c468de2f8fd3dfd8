"""Where the training loop runs: a Ray Train worker, or a search trial's own processes.

The loop (:mod:`mtlsearch.train`) is one function; it asks the :class:`Session`
opened from its loop config for its rank, world size and device, to prepare the model,
to report metrics with checkpoints and for the checkpoint to resume from. Two back ends:

* ``train``: a worker of a ``TorchTrainer`` (``mtlsearch train``, the single-task
  baselines): ``ray.train.get_context``, ``ray.train.torch.get_device`` /
  ``prepare_model`` (DDP), ``ray.train.report`` / ``get_checkpoint``. Train persists
  the checkpoints.
* ``tune``: search trials run the loop inside the Tune trial's process (rank 0), which
  reserved the worker's CPUs/GPUs itself; a multi-worker trial adds peer processes
  (ranks 1..N-1, :mod:`mtlsearch.execution.peers`) joined with it in one ``torch.distributed``
  group described by the loop config's ``ddp`` (:class:`mtlsearch.records.DDPGroup`). Rank 0 reports through
  ``ray.tune.report`` (Tune persists its checkpoints in the trial folder and restores
  the latest on ``--resume``, on a retried failure and for PBT) and reads
  ``ray.tune.get_checkpoint``; peers report nothing and resume from the checkpoint
  rank 0 handed them. Each process uses the GPU Ray assigned it, if any. (Ray 2.60
  refuses ``ray.train.get_context``/``report`` inside a Tune function, even in Train's
  local mode, hence this seam rather than ``TorchTrainer(num_workers=0)``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from mtlsearch.records import LoopConfig

Backend = Literal["train", "tune"]
JOIN_TIMEOUT = timedelta(minutes=5)
"""How long rank 0 waits for every peer to join the group (then the trial fails)."""


@dataclass(frozen=True)
class Session:
    """Report metrics (and a checkpoint folder) and fetch the checkpoint to resume."""

    backend: Backend = "train"
    rank: int = 0
    world: int = 1
    resume_from: Any = None
    """A peer's checkpoint to resume from (the one rank 0 resumes from)."""

    def identity(self) -> tuple[int, int]:
        """(world rank, world size) of this worker."""
        if self.backend == "tune":
            return self.rank, self.world
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def device(self) -> Any:
        """The torch device to train on (a GPU only when Ray assigned one)."""
        import torch

        if self.backend == "tune":
            # Ray limits CUDA_VISIBLE_DEVICES to the GPUs it assigned to this process.
            return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: Any) -> Any:
        """Move ``model`` to the device; wrap it in DDP when there are several workers.

        Unused-parameter detection: a step may leave parts of the model without gradient
        (a rendered task at alpha 0, or whose labels are all missing on some views)."""
        if self.backend == "tune":
            device = self.device()
            model = model.to(device)
            if self.world == 1:
                return model
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index or 0] if device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
        import ray.train.torch

        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": True}
        )

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Report ``metrics``; ``checkpoint_dir`` (a local folder) is persisted with them."""
        if self.backend == "tune":
            if self.rank != 0:
                return  # rank 0 reports for the group (its metrics are all-reduced)
            from ray import tune

            ckpt = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
            tune.report(metrics, checkpoint=ckpt)
        else:
            import ray.train

            ckpt = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
            ray.train.report(metrics, checkpoint=ckpt)

    def get_checkpoint(self) -> Any:
        """The latest persisted checkpoint of this run (``None`` on a fresh start)."""
        if self.backend == "tune":
            if self.rank != 0:
                return self.resume_from
            from ray import tune

            return tune.get_checkpoint()
        import ray.train

        return ray.train.get_checkpoint()


def open_session(loop: LoopConfig) -> Session:
    """The session a loop config asks for (``loop.report_to``); a search trial's DDP
    group (``loop.ddp``) is joined here."""
    group = loop.ddp
    if loop.report_to != "tune" or group is None:
        return Session(loop.report_to)
    import torch.distributed as dist

    rank, world = group.rank, group.world
    host, port = group.address.rsplit(":", 1)
    store = dist.TCPStore(host, int(port), world, is_master=rank == 0, timeout=JOIN_TIMEOUT)
    dist.init_process_group(group.backend, store=store, rank=rank, world_size=world)
    return Session(loop.report_to, rank=rank, world=world, resume_from=group.checkpoint)


__all__ = ["JOIN_TIMEOUT", "Backend", "Session", "open_session"]
