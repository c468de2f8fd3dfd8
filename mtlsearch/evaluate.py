"""Evaluation over the validation split: every task's metrics, optionally also on the
regularizer's renders, their average with the heads (Table 5), and multi-view input.

Protocol (the papers'): the main scores use SINGLE-VIEW input, the reference view of
each sample alone (a cross-view model duplicates it with an identity pose). Keys are
``f"{task}_{metric}"`` for the task heads and, with the same metric names,

- ``render_<task>_<metric>``: the regularizer's render of a rendered task, bilinearly
  upsampled from render size (``regularizer.render_scale``) to the label size;
- ``avg_<task>_<metric>``: the mean of head and upsampled render AFTER each task's
  activation (``TaskSpec.activate``: softmax for class maps, sigmoid for binary maps, L2
  normalisation for normals, identity for depth), turned back into the prediction
  convention (``TaskSpec.deactivate``: log-probabilities, logits, vectors, metres) for
  the metrics;
- ``mv_<task>_<metric>``: the heads with the sample's source views as extra input
  (only for models that take several views: ``cvm.enabled``).

Renders and averages exist only for rendered tasks (``regularizer.enabled``). Metric
statistics are summed across DDP workers (:func:`reduce_metrics`) before scoring, so
every worker returns the same numbers for the whole split, provided the workers'
shards are disjoint (:func:`shard`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mtlsearch.config import Config
from mtlsearch.metrics import (
    Metric,
    build_metrics,
    compute_all,
    delta_m,
    flatten_baselines,
    sync_metrics,
)
from mtlsearch.tasks import MULTIVIEW_PREFIX, OUTPUT_PREFIXES, get_task, resize_pred


def to_device(tree: Any, device: torch.device | str) -> Any:
    """Move every tensor in nested dicts/lists to ``device`` (other leaves unchanged)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device, non_blocking=True)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree


def model_inputs(views: Sequence[dict[str, Any]], cfg: Config, multiview: bool) -> dict[str, Any]:
    """Keyword arguments of ``model(...)`` for a batch of views (view 0 = reference).

    Single-view: the reference image (plus its intrinsics for a cross-view model, which
    duplicates the view itself, and for perspective regularizer renders). Multi-view (``cvm.enabled``): up to ``cvm.num_views - 1``
    source views with their intrinsics and source-from-reference poses.
    """
    ref = views[0]
    kwargs: dict[str, Any] = {"image": ref["image"]}
    if cfg.regularizer.enabled and cfg.regularizer.ray_mode == "perspective":
        kwargs["K"] = ref["K"]  # perspective renders cast rays with the view's K
    if cfg.cvm.enabled:
        kwargs["K"] = ref["K"]
        sources = list(views[1 : cfg.cvm.num_views])
        if multiview and sources:
            kwargs["src_images"] = torch.stack([v["image"] for v in sources], dim=1)
            kwargs["src_K"] = torch.stack([v["K"] for v in sources], dim=1)
            kwargs["rel_pose"] = torch.stack([v["rel_pose"] for v in sources], dim=1)
    return kwargs


def activate(task: str, pred: torch.Tensor) -> torch.Tensor:
    """A prediction after its task's activation (probabilities, unit vectors, metres)."""
    return get_task(task).activate(pred)


def deactivate(task: str, value: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`activate` up to what the metrics read (log-probabilities for
    classes, logits for binary maps), so averaged predictions score like raw ones."""
    return get_task(task).deactivate(value)


def average_prediction(task: str, head: torch.Tensor, render: torch.Tensor) -> torch.Tensor:
    """Table 5's average of a head and a render (upsampled to the head's size), taken
    after the task's activation and returned in the prediction convention."""
    render = resize_pred(render, tuple(head.shape[-2:]))
    return deactivate(task, 0.5 * (activate(task, head) + activate(task, render)))


def update_metric(
    metric: Metric, task: str, pred: torch.Tensor, label: torch.Tensor, sizes: torch.Tensor | None
) -> None:
    """Add a batch to ``metric``. A task with ``TaskSpec.unpadded`` (boundaries) is scored
    per image on its unpadded part (``sizes`` (B, 2): each view's (H, W) before
    validation padding), so the matching tolerance is a fraction of the real image's
    diagonal and NMS never sees the padding (SEISM evaluates the unpadded image). Other
    metrics skip padding by its ignore value."""
    if not get_task(task).unpadded or sizes is None:
        metric.update(pred, label)
        return
    for i, (h, w) in enumerate(sizes.tolist()):
        metric.update(pred[i : i + 1, ..., :h, :w], label[i : i + 1, ..., :h, :w])


def is_distributed() -> bool:
    """True inside a torch.distributed group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(device: torch.device | str = "cpu"):
    """A ``fn(tensor) -> tensor`` that SUMs a tensor over all workers (identity alone).

    The tensor travels on ``device`` (NCCL needs CUDA tensors; gloo takes CPU ones)."""

    def fn(t: torch.Tensor) -> torch.Tensor:
        if not is_distributed():
            return t
        t = t.to(device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu()

    return fn


def reduce_metrics(metric_sets: Mapping[str, Mapping[str, Metric]], device: torch.device | str = "cpu") -> None:
    """Sum the statistics of every metric across DDP workers, in place, in one all-reduce.

    A collective: every worker must call it with sets built from the same config, even a
    worker whose shard is empty. A no-op outside torch.distributed."""
    flat = {f"{prefix}|{task}": m for prefix, metrics in metric_sets.items() for task, m in metrics.items()}
    sync_metrics(flat, all_reduce_sum(device))


def shard(dataset: Dataset, rank: int, world_size: int) -> Dataset:
    """Worker ``rank``'s disjoint part of an evaluation set (every ``world_size``-th
    sample); unlike a DistributedSampler it never pads, so no sample counts twice."""
    if world_size <= 1:
        return dataset
    return Subset(dataset, list(range(rank, len(dataset), world_size)))  # type: ignore[arg-type]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    cfg: Config,
    info: Any,
    device: torch.device | str,
    outputs: Sequence[str] = ("heads",),
    multiview: bool = False,
) -> dict[str, float]:
    """Score ``model`` on ``loader`` (this worker's shard) and return the split's metrics.

    ``outputs``: any of ``heads``, ``renders``, ``average`` (the latter two need the
    regularizer). ``multiview``: also score the heads with multi-view input (``mv_``
    keys; needs ``cvm.enabled`` and a loader yielding several views). The model's
    train/eval mode is restored afterwards. Inside torch.distributed this is a
    collective (all workers call it; results are reduced before scoring).
    """
    for out in outputs:
        if out not in OUTPUT_PREFIXES:
            raise ValueError(f"evaluate: unknown output {out!r} (known: {', '.join(OUTPUT_PREFIXES)})")
    bare = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    tasks = cfg.task_names
    rendered = [t for t in cfg.rendered_tasks if t in tasks]
    num_classes = getattr(info, "num_classes", None) or None
    layout = cfg.data.layout

    def fresh(names: Sequence[str]) -> dict[str, Metric]:
        return build_metrics(names, num_classes, cfg.eval, layout=layout)

    sets: dict[str, dict[str, Metric]] = {"": fresh(tasks)}
    if rendered and "renders" in outputs:
        sets["render_"] = fresh(rendered)
    if rendered and "average" in outputs:
        sets["avg_"] = fresh(rendered)
    use_mv = multiview and cfg.cvm.enabled
    if use_mv:
        sets[MULTIVIEW_PREFIX] = fresh(tasks)
    want_renders = "render_" in sets or "avg_" in sets

    was_training = bare.training
    bare.eval()
    try:
        for batch in loader:
            views = to_device(batch["views"], device)
            labels = views[0]["labels"]
            out = bare(**model_inputs(views, cfg, multiview=False), render=want_renders)
            heads = out["heads"]
            sizes = views[0].get("valid_size")
            for task, metric in sets[""].items():
                update_metric(metric, task, heads[task], labels[task], sizes)
            renders = out.get("renders", {})
            for task, metric in sets.get("render_", {}).items():
                pred = resize_pred(renders[task], tuple(labels[task].shape[-2:]))
                update_metric(metric, task, pred, labels[task], sizes)
            for task, metric in sets.get("avg_", {}).items():
                pred = average_prediction(task, heads[task], renders[task])
                update_metric(metric, task, pred, labels[task], sizes)
            if use_mv:
                mv_heads = bare(**model_inputs(views, cfg, multiview=True), render=False)["heads"]
                for task, metric in sets[MULTIVIEW_PREFIX].items():
                    update_metric(metric, task, mv_heads[task], labels[task], sizes)
    finally:
        bare.train(was_training)

    reduce_metrics(sets, device)
    results: dict[str, float] = {}
    for prefix, metrics in sets.items():
        results.update(compute_all(metrics, prefix))
    return results


def with_delta_m(
    results: dict[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    tasks: Sequence[str] | None = None,
) -> dict[str, float]:
    """``results`` plus ``delta_m`` (single-view heads) and, when multi-view scores exist,
    ``mv_delta_m``, against ``baselines`` ({task: {metric: value}}) over ``tasks`` (default:
    the tasks the baselines name); unchanged without baselines. Raises
    :class:`~mtlsearch.errors.UserError` (from :func:`mtlsearch.metrics.delta_m`) when a
    task's score or baseline is missing."""
    if not baselines:
        return results
    flat = flatten_baselines(baselines)
    out = dict(results)
    out["delta_m"] = delta_m(results, flat, tasks=tasks)
    mv = {k[len(MULTIVIEW_PREFIX):]: v for k, v in results.items() if k.startswith(MULTIVIEW_PREFIX)}
    if mv:
        out["mv_delta_m"] = delta_m(mv, flat, tasks=tasks)
    return out


__all__ = [
    "OUTPUT_PREFIXES",
    "activate",
    "all_reduce_sum",
    "average_prediction",
    "deactivate",
    "evaluate",
    "is_distributed",
    "model_inputs",
    "reduce_metrics",
    "shard",
    "to_device",
    "update_metric",
    "with_delta_m",
]


def run_cli(args: Any) -> int:
    """``mtlsearch evaluate [CONFIG] [--set ...]``: score one model (``model.weights``,
    e.g. a converted official checkpoint) on the validation split, in this process, with
    the papers' single-view protocol, and print every metric."""
    from mtlsearch.config import load_config
    from mtlsearch.data.check import preflight
    from mtlsearch.data.pipeline import build_datasets, build_loader, resolve_root
    from mtlsearch.execution.trainer import format_metrics
    from mtlsearch.models import build_model

    cfg = load_config(args.config, args.overrides)
    if not cfg.model.weights and not cfg.model.pretrained_path:
        print("note: neither model.weights nor model.pretrained_path is set: scoring random weights",
              flush=True)
    root = resolve_root(cfg)
    preflight(cfg, root)  # a broken dataset fails here, before any model is built
    _, val_ds, info = build_datasets(cfg, root)
    loader = build_loader(val_ds, cfg, train=False, distributed=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(cfg, info.num_classes).to(device)
    print(f"evaluating {cfg.model.backbone} + {cfg.model.decoder} on {len(val_ds)} validation "
          f"image(s) of {root} ({device})", flush=True)
    scores = evaluate(model, loader, cfg, info, device)
    print(format_metrics(scores))
    return 0
