"""One config trained: as a Ray Train run (:func:`make_trainer`, ``mtlsearch train``, the
single-task baselines) or inside a search trial's own process (:func:`run_in_process`).

Ray 2.60 runs Train V2: a ``TorchTrainer`` is launched by ``.fit()`` and restores itself
from its latest checkpoint when ``(storage_path, name)`` repeat. Search trials do not
launch one (Ray refuses Train's reporting inside a Tune function): they run the same
loop under Tune's session (:mod:`mtlsearch.execution.session`). Names therefore never carry a
timestamp: rerunning ``mtlsearch train cfg.yaml --name X`` continues run ``X``.

The data root is resolved once in the driver (SynthRooms is generated there when
needed) and handed to the workers as an absolute path; on a multi-node cluster that
path must be visible to every node (shared file system) or each node regenerates it.

Train V2 settings: :data:`mtlsearch.execution.cluster.TRAIN_ENV` (with why). The other settings
the bench tried (state-actor reconciliation, preemption watcher, Train metrics off) gave
no measurable time and stay at Ray's defaults.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlsearch.config import Config, load_config
from mtlsearch.errors import UserError
from mtlsearch.execution.cluster import TRAIN_ENV, set_env
from mtlsearch.layout import TENSORBOARD_DIR
from mtlsearch.outputs import check_run_folder
from mtlsearch.records import LoopConfig
from mtlsearch.storage import Location, open_storage
from mtlsearch.storage import parse as parse_storage


def make_trainer(
    cfg: Config,
    *,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    storage_path: str | Path | Location,
    name: str,
    callbacks: Sequence[Any] | None = None,
    tensorboard_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    max_failures: int = 0,
):
    """Build the ``TorchTrainer`` that trains ``cfg`` on ``workers`` DDP workers.

    ``storage_path``: a local folder, a ``pyarrow.fs`` URI or a
    :class:`~mtlsearch.storage.Location` (:mod:`mtlsearch.storage`).
    ``workers=0`` runs Ray Train's local mode (the loop in this process, no Ray
    cluster), useful for debugging. ``data_root`` defaults to ``resolve_root(cfg)``
    (which generates SynthRooms if needed). Single-task baselines in
    ``cfg.eval.baselines`` add ``delta_m`` to every report. ``max_failures`` > 0 lets
    Train restart failed workers from the latest checkpoint.
    """
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from mtlsearch.metrics import check_baselines
    from mtlsearch.train import train_loop_per_worker

    if workers < 0:
        raise UserError(f"--workers: expected >= 0, got {workers}")
    if cpus_per_worker <= 0 or gpus_per_worker < 0:
        raise UserError(
            f"resources per worker: need CPU > 0 and GPU >= 0, got {cpus_per_worker}, {gpus_per_worker}"
        )
    if not name or "/" in name:
        raise UserError(f"run name must be a non-empty string without '/', got {name!r}")
    check_baselines(cfg.eval.baselines, cfg.task_names)
    loop_config = _loop_config(cfg, tensorboard_dir, data_root, "train")
    ray_path, ray_fs = parse_storage(storage_path).ray_storage()
    set_env(TRAIN_ENV)
    resources: dict[str, float] = {"CPU": float(cpus_per_worker)}
    if gpus_per_worker > 0:
        resources["GPU"] = float(gpus_per_worker)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config.to_dict(),
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker > 0 else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=ray_path,
            storage_filesystem=ray_fs,
            callbacks=list(callbacks) if callbacks else None,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )


def _loop_config(cfg: Config, tensorboard_dir: str | Path | None, data_root: str | Path | None,
                 report_to: str) -> LoopConfig:
    from mtlsearch.data.pipeline import resolve_root

    root = Path(data_root) if data_root is not None else resolve_root(cfg)
    return LoopConfig(config=cfg.to_dict(), data_root=str(root.resolve()), report_to=report_to,
                      tensorboard_dir=str(tensorboard_dir) if tensorboard_dir is not None else None)


def run_in_process(
    cfg: Config,
    *,
    tensorboard_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
) -> None:
    """Run the training loop of ``cfg`` in this process, inside a Tune trial.

    The trial reserved the workers' resources; the loop reports to Tune and resumes
    from Tune's checkpoint (:class:`mtlsearch.execution.session.Session`, back end ``tune``).
    With ``workers > 1`` this process is rank 0 of a DDP group whose other ranks are
    peer actors in the trial's placement group (:mod:`mtlsearch.execution.peers`).
    """
    loop_config = _loop_config(cfg, tensorboard_dir, data_root, "tune")
    if workers > 1:
        from mtlsearch.execution.peers import run_group

        run_group(loop_config, workers, cpus_per_worker, gpus_per_worker)
    else:
        from mtlsearch.train import train_loop_per_worker

        train_loop_per_worker(loop_config)


def failure_reason(err: BaseException) -> str:
    """The workers' own error messages out of a Ray Train failure (first line each)."""
    failures = getattr(err, "worker_failures", None)
    if not failures:
        return str(err)
    reasons = []
    for rank, exc in sorted(failures.items()):
        cause = getattr(exc, "cause", None) or exc
        reasons.append(f"worker {rank}: {type(cause).__name__}: {cause}".splitlines()[0])
    return "; ".join(dict.fromkeys(reasons))


def format_metrics(metrics: dict[str, Any]) -> str:
    """One ``key: value`` line per reported metric, sorted, floats with 4 significant digits."""
    lines = []
    for key in sorted(metrics):
        value = metrics[key]
        if isinstance(value, float) and math.isfinite(value):
            value = f"{value:.4g}"
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch train [CONFIG] [--set ...] [--workers N] ...``: one Ray Train run
    (without CONFIG: the defaults, plus ``--set``)."""
    cfg = load_config(args.config, args.overrides)
    if args.workers < 1:
        raise UserError(f"--workers: expected >= 1, got {args.workers}")
    if not 0 < args.cpus_per_worker < math.inf:
        raise UserError(f"--cpus-per-worker: expected a finite number > 0, got {args.cpus_per_worker}")
    if not 0 <= args.gpus_per_worker < math.inf:
        raise UserError(f"--gpus-per-worker: expected a finite number >= 0, got {args.gpus_per_worker}")
    name = args.name or (Path(args.config).stem if args.config else "run")
    storage = open_storage(args.storage)
    check_run_folder(storage, args.name)
    from mtlsearch.execution.cluster import check_address, check_gpus, connect

    check_address(args.address)
    check_gpus(args.gpus_per_worker, args.workers, args.address)

    from mtlsearch.data.pipeline import resolve_root

    root = resolve_root(cfg)
    from mtlsearch.data.check import preflight

    preflight(cfg, root)  # a broken dataset fails here, before Ray starts

    from ray.train import TrainingFailedError

    url = connect(args.address)
    if url:
        print(f"Ray dashboard: {url}", flush=True)
    trainer = make_trainer(
        cfg,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        storage_path=storage,
        name=name,
        tensorboard_dir=storage.local / name / TENSORBOARD_DIR if storage.is_local else None,
        data_root=root,
    )
    if not storage.is_local:
        print("note: TensorBoard events are written only with local (or shared file system) storage",
              flush=True)
    print(f"training {name!r}: {args.workers} worker(s), results in {storage / name}", flush=True)
    try:
        result = trainer.fit()
    except TrainingFailedError as err:
        print(f"error: training {name!r} failed: {failure_reason(err)}", file=sys.stderr)
        return 1
    print(f"finished {name!r}; final metrics:")
    print(format_metrics(result.metrics or {}))
    if result.checkpoint is not None:
        where = result.checkpoint.path if storage.is_local else storage.join(
            name, Path(result.checkpoint.path).name).display
        print(f"checkpoint: {where}")
    return 0


__all__ = ["TENSORBOARD_DIR", "failure_reason", "format_metrics", "make_trainer", "run_cli"]
