"""The training loop: pieces, learning in Ray Train's local mode, and real Ray runs
(2 DDP workers on gloo, restart from checkpoint, non-finite loss)."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtlsearch.checkpoint import load_checkpoint, restore, save_checkpoint
from mtlsearch.cli import build_parser
from mtlsearch.config import Config, load_config
from mtlsearch.data.pipeline import build_datasets, resolve_root
from mtlsearch.execution.trainer import make_trainer, run_cli
from mtlsearch.metrics import DepthMetric, SegMetric
from mtlsearch.train import LossWindow, make_optimizer, poly_schedule, tensorboard_scalars

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "data.synth.scenes": 6,
    "data.synth.size": [48, 64],
    "data.crop_size": [48, 64],
    "data.num_workers": 0,
    "model.backbone": "resnet18",
    "model.decoder_width": 32,
    "regularizer.samples_per_ray": 8,
    "eval.edge_thresholds": 5,
    "train.batch_size": 4,
}


def tiny(cache: Path, **extra) -> Config:
    return load_config(None, {**TINY, "data.synth.cache_dir": str(cache), **extra})


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    resolve_root(tiny(folder))
    return folder


# ---------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------


def test_poly_schedule_hand_values():
    f = poly_schedule(10, 0.9)
    assert f(0) == 1.0 and f(10) == 0.0 and f(12) == 0.0
    assert f(5) == pytest.approx(0.5**0.9)
    assert f(9) == pytest.approx(0.1**0.9)


def test_loss_window_means_and_reset():
    w = LossWindow()
    w.add({"loss": 1.0, "loss_depth": 2.0})
    w.add({"loss": 3.0, "loss_depth": float("nan")})
    out = w.pop()
    assert out["loss"] == 2.0 and math.isnan(out["loss_depth"]) and w.last_count == 2
    assert w.pop() == {} and w.count == 0


def test_optimizers_from_config():
    model = torch.nn.Linear(2, 2)
    sgd = make_optimizer(model, load_config(None, {"train.optimizer": "sgd", "train.lr": 0.1}).train)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    adamw = make_optimizer(model, load_config(None, {"train.optimizer": "adamw", "train.weight_decay": 0.01}).train)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01
    assert sgd.param_groups[0]["fused"] and adamw.param_groups[0]["fused"]
    loop = make_optimizer(model, load_config(None, {"train.fused": False}).train)
    assert isinstance(loop, torch.optim.Adam) and not loop.param_groups[0]["fused"]


def test_fused_adam_follows_the_per_tensor_loop():
    """The fused kernel (the default) takes the same steps as the per-tensor loop, up to
    rounding: 30 steps of a small net stay within 1e-5 of each other."""
    finals = []
    for fused in (True, False):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        start = torch.cat([p.detach().flatten() for p in net.parameters()])
        opt = make_optimizer(net, load_config(None, {"train.fused": fused, "train.weight_decay": 1e-4}).train)
        x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        finals.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert (finals[0] - finals[1]).abs().max() < 1e-5
    assert (finals[0] - start).abs().max() > 1e-2  # both moved: the comparison is not vacuous


def test_checkpoint_round_trip_weights_only(tmp_path):
    """Model, optimizer, schedule and every RNG come back; the file is weights_only-safe."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_schedule(10, 0.9))
    for _ in range(3):
        model(torch.randn(5, 3)).square().mean().backward()
        opt.step()
        sched.step()
    save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, step=3, config={"name": "x"})
    draws = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    model2 = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, poly_schedule(10, 0.9))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["config"] == {"name": "x"}
    step = restore(load_checkpoint(tmp_path), model=model2, optimizer=opt2, scheduler=sched2)
    assert step == 3
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 * 0.7**0.9)
    assert opt2.state_dict()["state"][0]["step"] == 3
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1])
    assert [random.random() for _ in range(3)] == draws[2]


# ---------------------------------------------------------------------------
# Learning, in Ray Train's local mode (the real loop in this process)
# ---------------------------------------------------------------------------


def constant_predictor_scores(cfg: Config, root: Path) -> tuple[float, float]:
    """mIoU of the majority class and depth RMSE of the mean depth on the eval split."""
    _, val_ds, info = build_datasets(cfg, root)
    views = [val_ds[i]["views"][0]["labels"] for i in range(len(val_ds))]
    seg = torch.stack([v["semseg"] for v in views])
    depth = torch.stack([v["depth"] for v in views])
    majority = int(torch.bincount(seg[seg != 255].flatten()).argmax())
    m = SegMetric(info.num_classes["semseg"])
    m.update(torch.full_like(seg, majority), seg)
    d = DepthMetric()
    d.update(torch.full_like(depth, float(depth[depth > 0].mean())), depth)
    return m.compute()["miou"], d.compute()["rmse"]


def test_local_mode_loop_learns(cache, tmp_path, one_thread):
    """60 iterations: every task's loss falls, and on the images it trained on (a copy of
    the dataset whose val split lists the train images) semseg beats the majority class
    and depth beats the mean depth."""
    root = tmp_path / "fit"
    shutil.copytree(resolve_root(tiny(cache)), root)
    (root / "gt_sets" / "val.txt").write_text((root / "gt_sets" / "train.txt").read_text())
    cfg = tiny(
        cache,
        **{
            "data.root": str(root), "data.augment": False, "train.lr": 0.005,
            "train.iterations": 60, "train.eval_every": 60, "train.log_every": 10,
            "tasks": {"semseg": 1.0, "depth": 1.0, "normals": 1.0, "edge": 1.0},
        },
    )
    trainer = make_trainer(cfg, workers=0, storage_path=tmp_path / "trials", name="local",
                           tensorboard_dir=tmp_path / "tb")
    metrics = trainer.fit().metrics
    assert metrics["iteration"] == 60
    for key in ("loss", "loss_semseg", "loss_depth", "loss_normals", "loss_edge", "alpha", "lr",
                "semseg_miou", "depth_rmse", "normals_mean_err", "edge_odsf"):
        assert math.isfinite(metrics[key]), key
    assert "delta_m" not in metrics

    scalars = tensorboard_scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["train/loss"]] == [10, 20, 30, 40, 50, 60]
    for task in cfg.task_names:
        curve = [v for _, v in scalars[f"train/loss_{task}"]]
        assert curve[-1] < curve[0], (task, curve)
    assert scalars["val/semseg_miou"][0] == (60, pytest.approx(metrics["semseg_miou"]))

    majority_miou, mean_depth_rmse = constant_predictor_scores(cfg, root)
    assert metrics["semseg_miou"] > majority_miou + 5, (metrics["semseg_miou"], majority_miou)
    assert metrics["depth_rmse"] < 0.8 * mean_depth_rmse, (metrics["depth_rmse"], mean_depth_rmse)


def test_short_cpu_run_beats_trivial_predictors_on_held_out_rooms(tmp_path, one_thread):
    """The `cpu` profile's run (48 rooms, paper task weights, 240 iterations) beats the
    majority class and the mean depth on the validation rooms it never saw."""
    profile = yaml.safe_load((REPO / "search_spaces" / "profiles" / "cpu.yaml").read_text())
    profile = {k: v for k, v in profile.items() if k not in ("resources", "max_concurrent_trials")}
    cfg = load_config(None, {**profile, "data.synth.cache_dir": str(tmp_path / "synth")})
    trainer = make_trainer(cfg, workers=0, storage_path=tmp_path / "trials", name="heldout")
    metrics = trainer.fit().metrics
    majority_miou, mean_depth_rmse = constant_predictor_scores(cfg, resolve_root(cfg))
    assert metrics["semseg_miou"] > majority_miou + 2, (metrics["semseg_miou"], majority_miou)
    assert metrics["depth_rmse"] < 0.9 * mean_depth_rmse, (metrics["depth_rmse"], mean_depth_rmse)


def test_local_mode_multiview_cvm_and_cross_view(cache, tmp_path, one_thread):
    """Multi-view training (CvM sources + cross-view regularizer term with depth-only
    source labels) and multi-view evaluation report every expected key."""
    cfg = tiny(
        cache,
        **{
            "tasks": {"semseg": 1.0, "depth": 1.0}, "cvm.enabled": True, "cvm.num_views": 2,
            "cvm.depth_planes": 8, "cvm.chunk_planes": 8, "cvm.layers": 1, "cvm.width": 32,
            "regularizer.enabled": True, "regularizer.cross_view.enabled": True,
            "regularizer.ray_mode": "perspective", "regularizer.depth_mode": "expected",
            "data.source_tasks": ["depth"], "eval.multiview": True,
            "eval.outputs": ["heads", "renders", "average"],
            "eval.baselines": {"semseg": {"miou": 10.0}, "depth": {"rmse": 1.0}},
            "train.iterations": 3, "train.eval_every": 3, "train.batch_size": 2,
            "data.max_val_images": 2,
        },
    )
    metrics = make_trainer(cfg, workers=0, storage_path=tmp_path, name="mv").fit().metrics
    for key in ("loss_xview_depth", "loss_xview_semseg", "loss_render_semseg", "mv_semseg_miou",
                "render_depth_rmse", "avg_depth_rmse", "delta_m", "mv_delta_m"):
        assert key in metrics, key
    assert math.isfinite(metrics["loss_xview_depth"])
    # the source views carry no semseg label: its cross-view term is the empty loss
    assert metrics["loss_xview_semseg"] == 0.0
    want = ((metrics["semseg_miou"] - 10.0) / 10.0 - (metrics["depth_rmse"] - 1.0)) / 2 * 100
    assert metrics["delta_m"] == pytest.approx(want)


# ---------------------------------------------------------------------------
# Real Ray runs
# ---------------------------------------------------------------------------


def report_recorder(path: Path):
    """A Train callback (run on the controller) appending every report to ``path``."""
    from ray.train import UserCallback

    class Recorder(UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(path, "a") as fh:
                fh.write(json.dumps({"metrics": metrics, "checkpoint": checkpoint is not None}) + "\n")

    return Recorder()


def read_reports(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


RAY_RUN = {
    "regularizer.enabled": True,
    "regularizer.tasks": ["depth", "normals"],
    "eval.outputs": ["heads", "average"],
    "train.iterations": 20,
    "train.eval_every": 10,
    "train.log_every": 5,
    "data.max_val_images": 4,
}


BASELINES = {"semseg": {"miou": 10.0}, "depth": {"rmse": 2.0}, "normals": {"mean_err": 40.0},
             "edge": {"odsf": 20.0}}


def test_two_workers_report_tensorboard_checkpoint_and_resume(cache, tmp_path, local_ray):
    from mtlsearch.execution.trial import with_baselines

    cfg = with_baselines(tiny(cache, **RAY_RUN), BASELINES)
    log = tmp_path / "reports.jsonl"
    trainer = make_trainer(cfg, workers=2, storage_path=tmp_path / "trials", name="ddp",
                           callbacks=[report_recorder(log)], tensorboard_dir=tmp_path / "tb")
    result = trainer.fit()
    reports = read_reports(log)
    assert [r["metrics"][0]["iteration"] for r in reports] == [10, 20]
    assert all(r["checkpoint"] for r in reports)
    keys = set(reports[0]["metrics"][0])
    expected = {"iteration", "loss", "alpha", "lr", "delta_m", "loss_render_depth", "avg_depth_rmse",
                *(f"loss_{t}" for t in cfg.task_names), "semseg_miou", "depth_rmse",
                "normals_mean_err", "edge_odsf"}
    assert expected <= keys and not any(k.startswith(("render_", "mv_")) for k in keys)
    for report in reports:
        first, second = report["metrics"]
        assert set(first) == set(second) == keys  # every worker, every report: same keys
        for key in keys:  # statistics and losses are reduced before reporting
            assert first[key] == pytest.approx(second[key], nan_ok=True), key
    assert result.metrics["iteration"] == 20
    m = result.metrics
    by_hand = (  # one term per task, lower-is-better terms negated
        (m["semseg_miou"] - 10.0) / 10.0 - (m["depth_rmse"] - 2.0) / 2.0
        - (m["normals_mean_err"] - 40.0) / 40.0 + (m["edge_odsf"] - 20.0) / 20.0
    ) / 4 * 100
    assert m["delta_m"] == pytest.approx(by_hand)

    state = load_checkpoint(Path(result.checkpoint.path))
    assert state["step"] == 20 and state["config"]["train"]["iterations"] == 20
    assert not any(k.startswith("module.") for k in state["model"])  # unwrapped from DDP
    scalars = tensorboard_scalars(tmp_path / "tb")
    assert [s for s, _ in scalars["train/loss"]] == [5, 10, 15, 20]
    assert [s for s, _ in scalars["val/depth_rmse"]] == [10, 20]

    # Restart: the same (storage, name) with more iterations continues from step 20.
    cfg30 = load_config(cfg.to_dict(), {"train.iterations": 30})
    log30 = tmp_path / "reports30.jsonl"
    result = make_trainer(cfg30, workers=2, storage_path=tmp_path / "trials", name="ddp",
                          callbacks=[report_recorder(log30)], tensorboard_dir=tmp_path / "tb").fit()
    assert [r["metrics"][0]["iteration"] for r in read_reports(log30)] == [30]
    assert load_checkpoint(Path(result.checkpoint.path))["step"] == 30
    steps = [s for s, _ in tensorboard_scalars(tmp_path / "tb")["train/loss"]]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_cli_non_finite_loss_fails_with_reason(cache, tmp_path, local_ray, capsys):
    """A real divergence (lr 1e30) stops every worker at the same iteration: the run
    fails, the CLI exits 1 and names the iteration and the non-finite losses."""
    config = tmp_path / "diverge.yaml"
    config.write_text(yaml.safe_dump({"name": "diverge"}))
    overrides = [f"{k}={json.dumps(v)}" for k, v in {**TINY, "data.synth.cache_dir": str(cache)}.items()]
    overrides += ["train.lr=1e30", "train.optimizer=sgd", "train.iterations=20", "train.eval_every=10"]
    args = build_parser().parse_args(
        ["train", str(config), "--workers", "2", "--storage", str(tmp_path / "trials"),
         *(x for o in overrides for x in ("--set", o))]
    )
    assert run_cli(args) == 1
    err = capsys.readouterr().err
    assert "NonFiniteLossError" in err and "non-finite loss at iteration" in err, err
    assert "loss_" in err
