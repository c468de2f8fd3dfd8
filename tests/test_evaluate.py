"""Evaluation over the validation split: outputs, prefixes, Table-5 average, DDP reduction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import Config, load_config
from mtlsearch.data.pipeline import build_datasets, build_loader, resolve_root
from mtlsearch.evaluate import (
    activate,
    average_prediction,
    evaluate,
    model_inputs,
    shard,
    with_delta_m,
)
from mtlsearch.execution.peers import free_port
from mtlsearch.metrics import build_metrics, compute_all

TASKS = {"semseg": 1.0, "depth": 1.0, "normals": 1.0}


def tiny_config(cache: Path, **extra) -> Config:
    overrides = {
        "tasks": TASKS,
        "data.synth.scenes": 4,
        "data.synth.size": [24, 32],
        "data.synth.cache_dir": str(cache),
        "data.crop_size": [24, 32],
        "data.num_workers": 0,
        "train.batch_size": 2,
        **extra,
    }
    return load_config(None, overrides)


class FixedModel(nn.Module):
    """Deterministic, image-dependent predictions; renders at half size when asked."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.seg = nn.Parameter(torch.randn(classes, 3, generator=g))
        self.nrm = nn.Parameter(torch.randn(3, 3, generator=g))
        self.calls: list[dict] = []

    def forward(self, image, *, src_images=None, K=None, src_K=None, rel_pose=None, render=None):
        self.calls.append({"src": None if src_images is None else tuple(src_images.shape), "render": render})
        heads = {
            "semseg": torch.einsum("cd,bdhw->bchw", self.seg, image),
            "depth": 3.0 + image[:, :1],
            "normals": torch.einsum("cd,bdhw->bchw", self.nrm, image),
        }
        out = {"heads": heads}
        if render:
            out["renders"] = {t: F.avg_pool2d(v, 2) * 0.5 for t, v in heads.items()}
        return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synth")
    cfg = tiny_config(cache)
    root = resolve_root(cfg)
    return cache, root


def manual_scores(model, loader, cfg, info, key_out: str) -> dict[str, float]:
    """What evaluate must return for one output, computed with the metrics directly."""
    metrics = build_metrics(cfg.task_names, info.num_classes, cfg.eval)
    for batch in loader:
        view = batch["views"][0]
        out = model(view["image"], render=True)
        for task, metric in metrics.items():
            head = out["heads"][task]
            label = view["labels"][task]
            if key_out == "heads":
                pred = head
            else:
                up = F.interpolate(out["renders"][task], size=label.shape[-2:], mode="bilinear")
                pred = up if key_out == "renders" else average_prediction(task, head, out["renders"][task])
            metric.update(pred, label)
    return compute_all(metrics)


def test_average_prediction_hand_values():
    head = torch.tensor([[[[2.0]], [[0.0]]]])  # 2 classes, 1 pixel
    render = torch.tensor([[[[0.0]], [[0.0]]]])
    avg = average_prediction("semseg", head, render)
    p_head = math.exp(2) / (math.exp(2) + 1)
    assert torch.allclose(avg.exp()[0, :, 0, 0], torch.tensor([(p_head + 0.5) / 2, ((1 - p_head) + 0.5) / 2]))
    edge = average_prediction("edge", torch.full((1, 1, 1, 1), 3.0), torch.full((1, 1, 1, 1), -1.0))
    want = (torch.sigmoid(torch.tensor(3.0)) + torch.sigmoid(torch.tensor(-1.0))) / 2
    assert torch.allclose(torch.sigmoid(edge), want.reshape(1, 1, 1, 1))
    nrm = average_prediction("normals", torch.tensor([2.0, 0, 0]).view(1, 3, 1, 1), torch.tensor([0, 0, 5.0]).view(1, 3, 1, 1))
    assert torch.allclose(nrm.flatten(), torch.tensor([0.5, 0.0, 0.5]))
    depth = average_prediction("depth", torch.full((1, 1, 4, 4), 2.0), torch.full((1, 1, 2, 2), 4.0))
    assert depth.shape == (1, 1, 4, 4) and torch.allclose(depth, torch.full_like(depth, 3.0))
    assert torch.allclose(activate("normals", torch.tensor([3.0, 4.0, 0]).view(1, 3, 1, 1)).flatten(), torch.tensor([0.6, 0.8, 0]))


def test_model_inputs_single_and_multi_view():
    cfg = load_config(None, {"cvm.enabled": True, "cvm.num_views": 2})
    views = [
        {"image": torch.zeros(2, 3, 8, 8), "K": torch.eye(3).expand(2, 3, 3), "rel_pose": torch.eye(4).expand(2, 4, 4)}
        for _ in range(3)
    ]
    single = model_inputs(views, cfg, multiview=False)
    assert set(single) == {"image", "K"}
    multi = model_inputs(views, cfg, multiview=True)
    assert multi["src_images"].shape == (2, 1, 3, 8, 8)  # cvm.num_views - 1 sources
    assert multi["src_K"].shape == (2, 1, 3, 3) and multi["rel_pose"].shape == (2, 1, 4, 4)
    assert set(model_inputs(views, load_config(None, {}), multiview=True)) == {"image"}


def test_evaluate_matches_metrics_for_every_output(data):
    cache, root = data
    cfg = tiny_config(cache, **{"regularizer.enabled": True, "regularizer.tasks": ["depth", "normals"]})
    _, val_ds, info = build_datasets(cfg, root)
    loader = build_loader(val_ds, cfg, train=False, distributed=False)
    model = FixedModel(info.num_classes["semseg"]).train()
    got = evaluate(model, loader, cfg, info, "cpu", outputs=("heads", "renders", "average"))
    assert model.training  # mode restored
    heads = manual_scores(model, loader, cfg, info, "heads")
    for key, value in heads.items():
        assert got[key] == pytest.approx(value, rel=1e-9, nan_ok=True)
    # renders and averages exist for the rendered tasks only, prefixed
    rendered_cfg = load_config(cfg.to_dict(), {"tasks": {"depth": 1.0, "normals": 1.0}})
    for prefix, out in (("render_", "renders"), ("avg_", "average")):
        want = manual_scores(model, loader, rendered_cfg, info, out)
        for key, value in want.items():
            assert got[prefix + key] == pytest.approx(value, rel=1e-9)
    assert not any(k.startswith(("render_semseg", "avg_semseg")) for k in got)
    # the render is half the head (before upsampling), so its depth error differs
    assert got["render_depth_rmse"] != pytest.approx(got["depth_rmse"])
    assert all(call["render"] for call in model.calls)


def test_multiview_scores_only_with_cvm(data):
    cache, root = data
    cfg = tiny_config(cache)
    _, val_ds, info = build_datasets(cfg, root)
    loader = build_loader(val_ds, cfg, train=False, distributed=False)
    got = evaluate(FixedModel(info.num_classes["semseg"]), loader, cfg, info, "cpu", multiview=True)
    assert not any(k.startswith("mv_") for k in got)
    cfg_mv = load_config(cfg.to_dict(), {"cvm.enabled": True, "cvm.num_views": 2})
    mv_loader = build_loader(val_ds.with_views(2), cfg_mv, train=False, distributed=False)
    model = FixedModel(info.num_classes["semseg"])
    got = evaluate(model, mv_loader, cfg_mv, info, "cpu", multiview=True)
    assert {c["src"] for c in model.calls} == {None, (2, 1, 3, 32, 32)}
    # FixedModel ignores the sources, so multi-view scores equal single-view ones
    assert got["mv_depth_rmse"] == pytest.approx(got["depth_rmse"])
    out = with_delta_m(got, {"depth": {"rmse": got["depth_rmse"] * 2}})
    assert out["delta_m"] == pytest.approx(50.0) and out["mv_delta_m"] == pytest.approx(50.0)
    assert with_delta_m(got, {}) == got


def _worker(rank: int, world: int, port: int, cache: str, root: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg = tiny_config(Path(cache))
        _, val_ds, info = build_datasets(cfg, root)
        loader = build_loader(shard(val_ds, rank, world), cfg, train=False, distributed=False)
        got = evaluate(FixedModel(info.num_classes["semseg"]), loader, cfg, info, "cpu")
        torch.save({"scores": got, "n": len(loader.dataset)}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_workers_reduce_to_the_whole_split(data, tmp_path):
    """Disjoint shards + all-reduced statistics = the metrics of the whole split."""
    cache, root = data
    cfg = tiny_config(cache)
    _, val_ds, info = build_datasets(cfg, root)
    whole = evaluate(FixedModel(info.num_classes["semseg"]), build_loader(val_ds, cfg, False, False), cfg, info, "cpu")
    mp.start_processes(_worker, args=(2, free_port("127.0.0.1"), str(cache), str(root), str(tmp_path)), nprocs=2, start_method="spawn")
    parts = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    assert parts[0]["n"] + parts[1]["n"] == len(val_ds) and parts[1]["n"] > 0
    for part in parts:
        for key, value in whole.items():
            assert part["scores"][key] == pytest.approx(value, rel=1e-9, nan_ok=True)
