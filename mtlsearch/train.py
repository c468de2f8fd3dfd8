"""The per-worker training loop of a Ray Train run, meant to be read top to bottom.

``train_loop_per_worker(loop_config)`` runs on every DDP worker of a ``TorchTrainer``
(see :mod:`mtlsearch.execution.trainer`), or in a one-worker search trial's own process.
``loop_config`` is a :class:`mtlsearch.records.LoopConfig` (or its dict): the config
(single-task baselines in its ``eval.baselines``), the dataset folder, the TensorBoard
folder and the :class:`mtlsearch.execution.session.Session` back end.

What it does, in order: seed; build datasets and loaders (a DistributedSampler for
training, disjoint shards for validation); build the model and wrap it in DDP; make the
optimizer and the poly LR schedule; restore the latest checkpoint if Train has one; then
train for ``train.iterations`` iterations (cycling the loader), evaluating every
``train.eval_every`` iterations and at the end. ``train.precision`` (bf16/fp16 autocast of
the forward pass, a GradScaler for fp16, losses and evaluation in float32),
``train.channels_last`` and ``train.compile`` follow :mod:`mtlsearch.precision`; a
checkpoint carries the GradScaler's state.

Rank, device, DDP wrapping, reports and checkpoints come from a
:class:`mtlsearch.execution.session.Session` (a Ray Train worker, or a one-worker Tune trial's own
process). Reports happen at evaluations only, on every worker, always with the same
keys: ``iteration``, ``workers`` (the DDP world size), ``loss`` and ``loss_<part>`` (means over the iterations since the
previous report and over workers), ``alpha``, ``lr``, the metrics of
:func:`mtlsearch.evaluate.evaluate` and, when baselines are known, ``delta_m``.
Checkpoints travel with reports: rank 0 attaches one when ``train.checkpoint_every``
iterations have passed since the last one (0: at every evaluation) and at the end, so
``checkpoint_every`` is rounded up to the next evaluation.

Multi-view batches: view 0 is the reference. With ``cvm.enabled`` the source views
(images, intrinsics, poses) are model input; with ``regularizer.cross_view.enabled`` the
second view's pose is the ``render_poses`` of the cross-view render and its labels (with
missing ones ignore-filled) are the cross-view targets. With ``data.supervise_all_views``
(default with ``data.extra_frames``) every view takes a turn as the reference
(:func:`train_inputs`), so every view with a label trains the heads; ``loss_src_<task>``
then logs the heads' loss on the turns of the source views (e.g. depth-only video frames).

A NaN or infinite loss stops the run with :class:`NonFiniteLossError`: the loss parts
are all-reduced every iteration before the backward pass, so every worker sees the same
sums and raises at the same iteration (no worker is left waiting in a collective).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from mtlsearch.checkpoint import load_checkpoint, restore, save_checkpoint
from mtlsearch.config import Config, TrainConfig, load_config
from mtlsearch.data.multiview import every_view_as_reference
from mtlsearch.data.pipeline import build_datasets, build_loader, supervise_all_views
from mtlsearch.errors import NonFiniteLossError, UserError
from mtlsearch.evaluate import (
    evaluate,
    is_distributed,
    model_inputs,
    shard,
    to_device,
    with_delta_m,
)
from mtlsearch.execution.phases import mark
from mtlsearch.execution.session import Session, open_session
from mtlsearch.metrics import check_baselines
from mtlsearch.models import build_model, compute_losses
from mtlsearch.models.losses import source_view_losses
from mtlsearch.models.regularizer import alpha_at
from mtlsearch.precision import (
    autocast,
    check_precision,
    float32,
    make_scaler,
    optimizer_step,
    slow_fp16_note,
    to_channels_last,
)
from mtlsearch.records import LoopConfig


def train_loop_per_worker(loop_config: LoopConfig | dict[str, Any]) -> None:
    """Train one config on this worker (see the module docstring for the protocol)."""
    # -- config, worker identity, seeds ---------------------------------------
    loop = LoopConfig.model_validate(loop_config)
    cfg = load_config(loop.config)
    session = open_session(loop)
    rank, world = session.identity()
    master = rank == 0
    device = session.device()
    check_precision(cfg.train.precision, device)
    if master:
        mark("loop_start")
    baselines = cfg.eval.baselines
    check_baselines(baselines, cfg.task_names)
    seed_everything(cfg.train.seed)

    # -- data -------------------------------------------------------------------
    train_ds, val_ds, info = build_datasets(cfg, loop.data_root)
    multiview_eval = cfg.eval.multiview and cfg.cvm.enabled
    if multiview_eval:
        val_ds = val_ds.with_views(cfg.cvm.num_views)
    train_loader = build_loader(train_ds, cfg, train=True, distributed=world > 1)
    val_loader = build_loader(shard(val_ds, rank, world), cfg, train=False, distributed=False)
    if len(train_loader) == 0:
        raise UserError(f"data: the training split of {info.root} yields no batch")

    # -- model, optimizer, LR schedule -------------------------------------------
    model = build_model(cfg, info.num_classes)
    note = slow_fp16_note(cfg.train.precision, device, model)
    if master and note:
        print(note, flush=True)
    if cfg.train.channels_last:
        model = to_channels_last(model)
    model = session.prepare_model(model)
    if cfg.train.compile:
        model.compile()  # in place: state_dict keys, checkpoints and DDP stay as they are
    if master:
        mark("model_ready")
    optimizer = make_optimizer(model, cfg.train)
    scaler = make_scaler(cfg.train.precision, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, poly_schedule(cfg.train.iterations, cfg.train.poly_power)
    )
    seed_everything(cfg.train.seed + rank)

    # -- resume from Train's latest checkpoint ------------------------------------
    step = 0
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_checkpoint(folder, map_location="cpu")
        # Rank 0's RNG state is the saved one; other ranks reseed deterministically.
        step = restore(state, model=model, optimizer=optimizer, scheduler=scheduler, rng=master,
                       scaler=scaler)
        # The config wins over the saved schedule (a rerun may change lr or iterations).
        factor = poly_schedule(cfg.train.iterations, cfg.train.poly_power)(step)
        scheduler.base_lrs = [cfg.train.lr] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = cfg.train.lr, cfg.train.lr * factor
        if not master:
            seed_everything(cfg.train.seed + rank + 7919 * step)
        if master:
            print(f"resuming from iteration {step} ({checkpoint.path})", flush=True)

    writer = None
    if master and loop.tensorboard_dir:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides what a stopped run logged after its last checkpoint.
        writer = SummaryWriter(loop.tensorboard_dir, purge_step=step + 1 if step else None)
    reporter = Reporter(model, val_loader, cfg, info, device, baselines, writer, master, multiview_eval, session)

    # -- train ------------------------------------------------------------------
    iterations = cfg.train.iterations
    batches = cycle(train_loader, epoch=step // len(train_loader))
    log_window, report_window = LossWindow(), LossWindow()
    last_checkpoint, reported_at = step, None
    alpha, lr = alpha_at(step, cfg), optimizer.param_groups[0]["lr"]
    tic = time.perf_counter()
    first_step = step + 1
    model.train()
    try:
        while step < iterations:
            views = to_device(next(batches)["views"], device)
            alpha = alpha_at(step, cfg)
            alphas = {t: alpha_at(step, cfg, t) for t in cfg.task_names}
            lr = optimizer.param_groups[0]["lr"]
            inputs, labels, xview_labels, ref_rows = train_inputs(views, cfg)
            if cfg.train.channels_last:
                inputs["image"] = inputs["image"].contiguous(memory_format=torch.channels_last)
            with autocast(cfg.train.precision, device):
                out = model(**inputs)
            out = float32(out)  # losses in float32, outside autocast
            loss, parts = compute_losses(out, labels, cfg, alphas, xview_labels)
            if ref_rows < len(inputs["image"]):
                parts.update(source_view_losses(out, labels, ref_rows, cfg))

            # Every worker gets the same sums, so all of them stop at the same step.
            means = mean_over_workers({"loss": loss.detach(), **parts}, device)
            bad = [k for k, v in means.items() if not math.isfinite(v)]
            if bad:
                shown = ", ".join(f"{k}={means[k]}" for k in bad)
                raise NonFiniteLossError(
                    f"non-finite loss at iteration {step + 1}: {shown} (lr={lr:.3g}, "
                    f"alpha={alpha:.3g}); lower train.lr or set train.grad_clip"
                    + ("" if cfg.train.precision == "fp32" else
                       f" (train.precision={cfg.train.precision}: try fp32)")
                )

            optimizer_step(loss, optimizer, scaler, model.parameters(), cfg.train.grad_clip)
            scheduler.step()
            step += 1
            if master and step == first_step:
                mark("first_step")
            log_window.add(means)
            report_window.add(means)

            if step % cfg.train.log_every == 0 or step == iterations:
                seconds = time.perf_counter() - tic
                logged = log_window.pop()
                rate = log_window.last_count / max(seconds, 1e-9)
                if master:
                    print(format_progress(step, iterations, logged, lr, alpha, rate), flush=True)
                if writer is not None:
                    for key, value in {**logged, "lr": lr, "alpha": alpha, "it_per_s": rate}.items():
                        writer.add_scalar(f"train/{key}", value, step)
                tic = time.perf_counter()

            if step % cfg.train.eval_every == 0 or step == iterations:
                want_checkpoint = (
                    step == iterations
                    or cfg.train.checkpoint_every == 0
                    or step - last_checkpoint >= cfg.train.checkpoint_every
                )
                started = time.perf_counter()
                reporter.report(step, report_window.pop(), alpha, lr,
                                checkpoint_state=(optimizer, scheduler, scaler) if want_checkpoint else None)
                reported_at = step
                if want_checkpoint:
                    last_checkpoint = step
                tic += time.perf_counter() - started  # it/s counts training time only

        if reported_at != step:
            # Restored from the final checkpoint (a finished run started again): report
            # once more so that this run, too, ends with a result.
            reporter.report(step, report_window.pop(), alpha, lr, checkpoint_state=None)
    finally:
        if writer is not None:
            writer.close()
        if master:
            mark("loop_end")


@dataclass
class Reporter:
    """What every evaluation of a run shares: it evaluates, logs to TensorBoard and
    reports through the session (with a checkpoint from rank 0 when asked)."""

    model: torch.nn.Module
    val_loader: DataLoader
    cfg: Config
    info: Any
    device: torch.device
    baselines: dict[str, dict[str, float]]
    writer: Any
    master: bool
    multiview: bool
    session: Session

    def report(self, step: int, losses: dict[str, float], alpha: float, lr: float,
               checkpoint_state: tuple[torch.optim.Optimizer, Any, Any] | None) -> dict[str, Any]:
        """Evaluate at ``step`` and report; ``checkpoint_state`` = (optimizer, scheduler,
        GradScaler or None) adds a checkpoint. Evaluation runs in float32, without
        autocast. Returns the reported dict."""
        cfg, writer = self.cfg, self.writer
        scores = evaluate(self.model, self.val_loader, cfg, self.info, self.device, cfg.eval.outputs,
                          multiview=self.multiview)
        scores = with_delta_m(scores, self.baselines, cfg.task_names)
        metrics: dict[str, Any] = {"iteration": step, "workers": self.session.identity()[1], **losses,
                                   "alpha": alpha, "lr": lr, **scores}
        if self.master:
            print(format_eval(step, scores), flush=True)
        if writer is not None:
            for key, value in scores.items():
                writer.add_scalar(f"val/{key}", value, step)
            writer.flush()
        if self.master and checkpoint_state is not None:
            optimizer, scheduler, scaler = checkpoint_state
            with tempfile.TemporaryDirectory(prefix="mtlsearch-ckpt-") as folder:
                save_checkpoint(
                    folder, model=self.model, optimizer=optimizer, scheduler=scheduler, step=step,
                    config=cfg.to_dict(), num_classes=dict(self.info.num_classes), scaler=scaler,
                )
                self.session.report(metrics, checkpoint_dir=folder)
        else:
            self.session.report(metrics)
        return metrics


# ---------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_inputs(
    views: list[dict[str, Any]], cfg: Config
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor] | None, int]:
    """Model keyword arguments, the labels of heads and renders, the cross-view targets
    (or None) of one training batch, and how many rows have the original reference.

    With ``data.supervise_all_views`` every view takes a turn as the reference
    (:func:`~mtlsearch.data.multiview.every_view_as_reference`, B * V rows; rows [0, B)
    are the original batch), so every view with a label trains the heads. With
    ``regularizer.cross_view.enabled`` the second view's pose and intrinsics drive the
    cross-view render and its labels are the targets."""
    rows = int(views[0]["image"].shape[0])
    if supervise_all_views(cfg) and len(views) > 1:
        views = every_view_as_reference(views)
    inputs = model_inputs(views, cfg, multiview=cfg.cvm.enabled)
    xview_labels = None
    if cfg.regularizer.enabled and cfg.regularizer.cross_view.enabled:
        inputs["render_poses"] = views[1]["rel_pose"]
        inputs["render_K"] = views[1]["K"]
        xview_labels = views[1]["labels"]
    return inputs, views[0]["labels"], xview_labels, rows


def make_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with ``train.momentum``) over the trainable parameters, with
    the fused kernel unless ``train.fused`` is false."""
    params = [p for p in model.parameters() if p.requires_grad]
    common = {"lr": train.lr, "weight_decay": train.weight_decay, "fused": train.fused or None}
    if train.optimizer == "adam":
        return torch.optim.Adam(params, **common)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, **common)
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=train.momentum, **common)
    raise UserError(f"train.optimizer: unknown optimizer {train.optimizer!r} (known: adam, adamw, sgd)")


def poly_schedule(iterations: int, power: float):
    """LR factor ``(1 - step / iterations) ** power`` (the field's poly(0.9) schedule)."""

    def factor(step: int) -> float:
        return (1.0 - min(step, iterations) / iterations) ** power

    return factor


def cycle(loader: DataLoader, epoch: int = 0) -> Iterator[dict[str, Any]]:
    """Endless batches of ``loader``, reshuffled each epoch (also across DDP workers)."""
    while True:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def mean_over_workers(values: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, float]:
    """Means over DDP workers of scalar tensors (one all-reduce); NaN/inf propagate."""
    flat = torch.stack([v.detach().float().reshape(()) for v in values.values()]).to(device)
    if is_distributed():
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat / dist.get_world_size()
    return dict(zip(values, flat.cpu().tolist()))


class LossWindow:
    """Running sums of per-iteration losses between two reads (log lines, reports)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last_count = 0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        """Means since the previous ``pop`` (NaN for keys never added), then reset."""
        out = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        self.last_count = self.count
        self.sums, self.count = {k: 0.0 for k in self.sums}, 0
        return out


def format_progress(step: int, total: int, losses: dict[str, float], lr: float, alpha: float, rate: float) -> str:
    """One progress line: iteration, losses, lr, alpha, iterations per second."""
    parts = " ".join(f"{k.removeprefix('loss_')}={v:.4g}" for k, v in losses.items() if k != "loss")
    return (
        f"it {step}/{total} loss {losses.get('loss', float('nan')):.4f} [{parts}] "
        f"lr {lr:.3g} alpha {alpha:.3g} {rate:.2f} it/s"
    )


def format_eval(step: int, scores: dict[str, float]) -> str:
    """One line of evaluation scores."""
    return f"eval @ {step}: " + " ".join(f"{k}={v:.4g}" for k, v in scores.items())


def tensorboard_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Read back the scalars of the event files in ``folder``: {tag: [(step, value)]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


__all__ = [
    "LossWindow",
    "cycle",
    "Reporter",
    "make_optimizer",
    "mean_over_workers",
    "poly_schedule",
    "seed_everything",
    "tensorboard_scalars",
    "train_loop_per_worker",
]
