"""Where the training loop runs: a Ray Train worker, or the Tune trial's own process.

The loop (:mod:`mtlsearch.train`) is one function; it asks the :class:`Session`
opened from its loop config for its rank, world size and device, to prepare the model,
to report metrics with checkpoints and for the checkpoint to resume from. Two back ends:

* ``train``: a worker of a ``TorchTrainer`` (``mtlsearch train``, multi-worker search
  trials): ``ray.train.get_context``, ``ray.train.torch.get_device`` /
  ``prepare_model`` (DDP), ``ray.train.report`` / ``get_checkpoint``. Train persists
  checkpoints; ``TuneReportCallback`` forwards rank 0's metrics to Tune.
* ``tune``: single-worker search trials run the loop inside the Tune trial's process
  (rank 0 of 1; the trial reserved the worker's CPUs/GPUs itself): ``ray.tune.report``
  / ``ray.tune.get_checkpoint``, the GPU Ray assigned to the trial if any. Nothing is
  started per trial (no Train controller, worker actor or placement group), so
  nothing leaks when a scheduler stops the trial, and Tune persists the checkpoints in
  the trial folder, restoring the latest on ``--resume`` and on a retried failure.
  (Ray 2.60 refuses ``ray.train.get_context``/``report`` inside a Tune function, even
  in Train's local mode, hence this seam rather than ``TorchTrainer(num_workers=0)``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Backend = Literal["train", "tune"]
BACKEND_KEY = "report_to"
"""The loop-config key that names the back end (default ``train``)."""
PG_FILE_KEY = "placement_group_file"


@dataclass(frozen=True)
class Session:
    """Report metrics (and a checkpoint folder) and fetch the checkpoint to resume."""

    backend: Backend = "train"

    def identity(self) -> tuple[int, int]:
        """(world rank, world size) of this worker."""
        if self.backend == "tune":
            return 0, 1
        import ray.train

        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def device(self) -> Any:
        """The torch device to train on (a GPU only when Ray assigned one)."""
        import torch

        if self.backend == "tune":
            return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare_model(self, model: Any) -> Any:
        """Move ``model`` to the device; wrap it in DDP when there are several workers."""
        if self.backend == "tune":
            return model.to(self.device())
        import ray.train.torch

        # Unused-parameter detection: a step may leave parts of the model without gradient
        # (e.g. a rendered task whose labels are all missing on some views).
        return ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": True}
        )

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        """Report ``metrics``; ``checkpoint_dir`` (a local folder) is persisted with them."""
        if self.backend == "tune":
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
            from ray import tune

            return tune.get_checkpoint()
        import ray.train

        return ray.train.get_checkpoint()


def open_session(loop_config: dict[str, Any]) -> Session:
    """The session a loop config asks for (``loop_config["report_to"]``).

    A Train run inside a search trial also records its placement group (rank 0, at
    ``loop_config["placement_group_file"]``) so the search can free it if Tune ends the
    trial (:mod:`mtlsearch.placement`).
    """
    backend = loop_config.get(BACKEND_KEY) or "train"
    if backend not in ("train", "tune"):
        raise ValueError(f"{BACKEND_KEY}: expected 'train' or 'tune', got {backend!r}")
    session = Session(backend)
    record = loop_config.get(PG_FILE_KEY)
    if backend == "train" and record and session.identity()[0] == 0:
        from mtlsearch.placement import record_current_group

        record_current_group(record)
    return session


__all__ = ["BACKEND_KEY", "PG_FILE_KEY", "Backend", "Session", "open_session"]
