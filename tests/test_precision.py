"""Mixed precision (train.precision, channels_last): autocast where it belongs and float32
where precision matters, the GradScaler step and its checkpoint state, bf16 training that
learns, an fp16 run that resumes with its scaler, and ``bench gpu`` without a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mtlsearch.checkpoint import CHECKPOINT_FILE, load_checkpoint, restore, save_checkpoint
from mtlsearch.config import load_config
from mtlsearch.data.pipeline import resolve_root
from mtlsearch.errors import UserError
from mtlsearch.execution.trainer import make_trainer
from mtlsearch.models import build_model, compute_losses
from mtlsearch.models.regularizer import TriplaneRegularizer
from mtlsearch.precision import (
    autocast,
    float32,
    make_scaler,
    optimizer_step,
    slow_fp16_note,
    to_channels_last,
)
from mtlsearch.train import poly_schedule

REPO = Path(__file__).resolve().parents[1]

SMALL = {
    "tasks": {"semseg": 1.0, "depth": 1.0},
    "data.synth.scenes": 4,
    "data.synth.views": 2,
    "data.synth.size": [32, 40],
    "data.crop_size": [32, 40],
    "data.num_workers": 0,
    "data.max_val_images": 4,
    "model.backbone": "test_resnet",
    "model.decoder_width": 16,
    "eval.edge_thresholds": 5,
    "train.batch_size": 2,
}
"""Two tasks on a timm test network at 32x40: fp16 convolution backward on CPU is a slow
fallback, so the fp16 run must be this small."""


def small(cache: Path, **extra) -> object:
    return load_config(None, {**SMALL, "data.synth.cache_dir": str(cache), **extra})


def batch_of(cfg, model, batch: int = 2):
    torch.manual_seed(1)
    h, w = cfg.data.crop_size
    labels = {"semseg": torch.randint(0, model.task_channels["semseg"], (batch, h, w)),
              "depth": torch.rand(batch, 1, h, w) * 5 + 1}
    return torch.randn(batch, 3, h, w), labels


# ---------------------------------------------------------------------------
# Config keys
# ---------------------------------------------------------------------------


def test_precision_keys_defaults_and_errors():
    cfg = load_config(None)
    assert (cfg.train.precision, cfg.train.channels_last, cfg.train.compile) == ("fp32", False, False)
    assert load_config(None, {"train.precision": "bf16"}).train.precision == "bf16"
    with pytest.raises(UserError, match=r"train\.precision.*'fp64'.*fp32.*bf16.*fp16"):
        load_config(None, ["train.precision=fp64"])
    with pytest.raises(UserError, match=r"train\.channels_last"):
        load_config(None, {"train.channels_last": 1})
    for name in ("nyud_invpt", "pascal_mtinet"):  # the papers trained in fp32
        assert load_config(REPO / "configs" / f"{name}.yaml").train.precision == "fp32"


# ---------------------------------------------------------------------------
# Where autocast applies, and where float32 is kept
# ---------------------------------------------------------------------------


def test_bf16_forward_runs_convolutions_low_and_losses_in_float32(tmp_path):
    cfg = small(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg, {"semseg": 5})
    image, labels = batch_of(cfg, model)
    seen = []
    model.backbone.register_forward_hook(lambda m, i, o: seen.append(o[-1].dtype))
    ref, _ = compute_losses(model(image), labels, cfg, 0.0)
    with autocast("bf16", "cpu"):
        out = model(image)
    assert seen == [torch.float32, torch.bfloat16]
    assert out["heads"]["depth"].dtype == torch.bfloat16
    out = float32(out)
    assert all(v.dtype == torch.float32 for part in out.values() for v in part.values())
    loss, parts = compute_losses(out, labels, cfg, 0.0)
    assert loss.dtype == torch.float32
    assert loss.item() != ref.item()  # bf16 did run ...
    assert loss.item() == pytest.approx(ref.item(), rel=0.03)  # ... and stayed close


def test_float32_leaves_integer_tensors_and_other_leaves():
    tree = {"a": [torch.ones(2, dtype=torch.bfloat16), torch.arange(3)], "b": ("x", 1.5)}
    out = float32(tree)
    assert out["a"][0].dtype == torch.float32 and out["a"][1].dtype == torch.int64
    assert out["b"] == ("x", 1.5)


@pytest.mark.parametrize("ray_mode", ["orthographic", "perspective"])
def test_regularizer_renders_in_float32_under_bf16_autocast(ray_mode, monkeypatch):
    """Only the tri-plane encoder and the field MLPs follow autocast: sampling, densities
    and compositing see float32, and the renders stay within bf16-MLP rounding of fp32."""
    from mtlsearch.models import regularizer as reg_module

    cfg = load_config(None, {"regularizer.enabled": True, "regularizer.ray_mode": ray_mode,
                             "regularizer.depth_mode": "expected", "regularizer.samples_per_ray": 16,
                             "regularizer.dropout": 0.0})
    torch.manual_seed(0)
    reg = TriplaneRegularizer(16, {"depth": 1, "normals": 3, "semseg": 5}, cfg.regularizer).eval()
    f = torch.randn(2, 16, 12, 16)
    K = torch.tensor([[60.0, 0, 63.5], [0, 60.0, 47.5], [0, 0, 1]]).expand(2, 3, 3)
    kwargs = {"K": K} if ray_mode == "perspective" else {}
    ref = reg(f, (96, 128), **kwargs)

    dtypes: dict[str, set] = {"sample": set(), "sigma": set(), "mlp": set()}
    real_sample, real_weights = torch.nn.functional.grid_sample, reg_module.composite_weights

    def sample(plane, grid, **kw):
        dtypes["sample"] |= {plane.dtype, grid.dtype}
        return real_sample(plane, grid, **kw)

    def weights(sigma, delta):
        dtypes["sigma"].add(sigma.dtype)
        return real_weights(sigma, delta)

    monkeypatch.setattr(torch.nn.functional, "grid_sample", sample)
    monkeypatch.setattr(reg_module, "composite_weights", weights)
    reg.fields["depth"][0].register_forward_hook(lambda m, i, o: dtypes["mlp"].add(o.dtype))
    with autocast("bf16", "cpu"):
        low = reg(f, (96, 128), **kwargs)
    assert dtypes == {"sample": {torch.float32}, "sigma": {torch.float32}, "mlp": {torch.bfloat16}}
    for task in ref:
        assert low[task].dtype == torch.float32
        err = (low[task] - ref[task]).abs().max().item() / ref[task].abs().max().item()
        assert 0 < err < 0.03, (task, err)


def test_channels_last_keeps_the_function(tmp_path):
    cfg = small(tmp_path)
    torch.manual_seed(0)
    model = build_model(cfg, {"semseg": 5}).eval()
    image, _ = batch_of(cfg, model)
    with torch.no_grad():
        ref = model(image)["heads"]
        to_channels_last(model)
        out = model(image.contiguous(memory_format=torch.channels_last))["heads"]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    for task in ref:
        assert torch.allclose(out[task], ref[task], atol=1e-4, rtol=1e-4), task


def test_slow_fp16_note_only_for_convolutions_on_cpu():
    conv, linear = torch.nn.Conv2d(3, 3, 1), torch.nn.Linear(3, 3)
    assert "bf16" in slow_fp16_note("fp16", "cpu", conv)
    assert slow_fp16_note("fp16", "cpu", linear) is None
    assert slow_fp16_note("bf16", "cpu", conv) is None
    assert slow_fp16_note("fp16", "cuda", conv) is None


# ---------------------------------------------------------------------------
# The GradScaler step and its checkpoint state
# ---------------------------------------------------------------------------


def _sgd_pair(scale: float):
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 2)
    b = torch.nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)
    return a, torch.optim.SGD(a.parameters(), lr=1.0), b, torch.optim.SGD(b.parameters(), lr=1.0), scaler


@pytest.mark.parametrize("clip", [0.0, 0.1])
def test_scaled_step_equals_the_unscaled_step(clip):
    """The scaler's loss scale (1024) is undone before the update and before clipping."""
    a, opt_a, b, opt_b, scaler = _sgd_pair(1024.0)
    x = torch.randn(8, 4)
    assert optimizer_step(a(x).square().mean(), opt_a, None, a.parameters(), clip)
    assert optimizer_step(b(x).square().mean(), opt_b, scaler, b.parameters(), clip)
    start = _sgd_pair(1024.0)[0]
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), start.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)
        assert (pa - p0).abs().max() > 1e-3  # the step moved them
    if clip:
        moved = torch.cat([(pa - p0).flatten() for pa, p0 in zip(a.parameters(), start.parameters())])
        assert moved.norm().item() == pytest.approx(clip, rel=1e-5)  # lr 1: the clipped gradient


def test_overflowing_step_is_skipped_and_the_scale_halves():
    _, _, b, opt_b, scaler = _sgd_pair(65536.0)
    before = [p.detach().clone() for p in b.parameters()]
    loss = b(torch.full((2, 4), 1e34)).sum()  # finite loss; gradients 1e34 x 65536 overflow
    assert torch.isfinite(loss)
    assert not optimizer_step(loss, opt_b, scaler, b.parameters())
    assert scaler.get_scale() == 32768.0
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), before))


def test_checkpoint_keeps_the_grad_scaler_and_reads_files_without_one(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, poly_schedule(10, 0.9))
    scaler = make_scaler("fp16", "cpu")
    scaler.load_state_dict({**scaler.state_dict(), "scale": 512.0, "_growth_tracker": 3})
    save_checkpoint(tmp_path / "fp16", model=model, optimizer=opt, scheduler=sched, step=4,
                    config={}, scaler=scaler)
    saved = torch.load(tmp_path / "fp16" / CHECKPOINT_FILE, weights_only=True)
    assert saved["scaler"]["scale"] == 512.0

    fresh = make_scaler("fp16", "cpu")
    assert restore(load_checkpoint(tmp_path / "fp16"), model=model, scaler=fresh, rng=False) == 4
    assert (fresh.get_scale(), fresh.state_dict()["_growth_tracker"]) == (512.0, 3)

    # An fp32/bf16 checkpoint (or one written before the scaler was saved): a fresh scaler.
    save_checkpoint(tmp_path / "fp32", model=model, optimizer=opt, scheduler=sched, step=4, config={})
    assert "scaler" not in torch.load(tmp_path / "fp32" / CHECKPOINT_FILE, weights_only=True)
    other = make_scaler("fp16", "cpu")
    restore(load_checkpoint(tmp_path / "fp32"), model=model, scaler=other, rng=False)
    assert other.get_scale() == 65536.0
    assert make_scaler("bf16", "cpu") is None and make_scaler("fp32", "cpu") is None

    saved["scaler"] = [1.0]
    torch.save(saved, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="'scaler' must be a mapping"):
        load_checkpoint(tmp_path / "bad.pt")


# ---------------------------------------------------------------------------
# The training loop (Ray Train's local mode)
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_fp16_run_resumes_with_its_grad_scaler(tmp_path, local_ray):
    """A Ray Train fp16 run checkpoints its scaler; restarted with more iterations it
    continues from the saved scale and growth tracker (edited to 1024 / 7 to be
    unmistakable), not from a fresh scaler's 65536 / 0. A bf16 restart of the same run
    continues without a scaler."""
    cfg = small(tmp_path / "synth", **{"train.precision": "fp16", "train.iterations": 3,
                                      "train.eval_every": 3, "train.log_every": 3})
    trials = tmp_path / "trials"
    result = make_trainer(cfg, workers=1, storage_path=trials, name="fp16").fit()
    path = Path(result.checkpoint.path) / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and 0 < state["scaler"]["scale"] <= 65536.0
    state["scaler"].update(scale=1024.0, _growth_tracker=7)
    torch.save(state, path)

    cfg5 = load_config(cfg, {"train.iterations": 5, "train.eval_every": 5})
    result = make_trainer(cfg5, workers=1, storage_path=trials, name="fp16").fit()
    final = load_checkpoint(Path(result.checkpoint.path))
    assert final["step"] == 5
    assert (final["scaler"]["scale"], final["scaler"]["_growth_tracker"]) == (1024.0, 9)

    cfg_bf16 = load_config(cfg5, {"train.precision": "bf16", "train.iterations": 6, "train.eval_every": 6})
    result = make_trainer(cfg_bf16, workers=1, storage_path=trials, name="fp16").fit()
    final = load_checkpoint(Path(result.checkpoint.path))
    assert final["step"] == 6 and "scaler" not in final
    assert result.metrics["iteration"] == 6


def test_cpu_profile_learns_in_bf16_with_channels_last(tmp_path, one_thread):
    """configs/synthrooms_cpu.yaml (48 rooms, regularizer on, 240 iterations) in bf16 with
    channels-last: every task's loss falls and the model beats the majority class and the
    mean depth on validation rooms it never saw."""
    from tests.test_train import constant_predictor_scores

    cfg = load_config(REPO / "configs" / "synthrooms_cpu.yaml",
                      {"train.precision": "bf16", "train.channels_last": True,
                       "data.synth.cache_dir": str(tmp_path / "synth")})
    result = make_trainer(cfg, workers=0, storage_path=tmp_path / "trials", name="bf16",
                          tensorboard_dir=tmp_path / "tb").fit()
    from mtlsearch.train import tensorboard_scalars

    scalars = tensorboard_scalars(tmp_path / "tb")
    for task in cfg.task_names:
        curve = [v for _, v in scalars[f"train/loss_{task}"]]
        assert curve[-1] < 0.8 * curve[0], (task, curve)
    majority_miou, mean_depth_rmse = constant_predictor_scores(cfg, resolve_root(cfg))
    metrics = result.metrics
    assert metrics["semseg_miou"] > majority_miou + 2, (metrics["semseg_miou"], majority_miou)
    assert metrics["depth_rmse"] < 0.9 * mean_depth_rmse, (metrics["depth_rmse"], mean_depth_rmse)


# ---------------------------------------------------------------------------
# Benchmarks' arguments, and bench gpu on a machine without a GPU
# ---------------------------------------------------------------------------


def test_bench_lists_are_checked():
    from mtlsearch.bench.model import parse_list, usable_precisions
    from mtlsearch.precision import PRECISIONS

    assert parse_list(None, PRECISIONS, "--precision") == ["fp32", "bf16", "fp16"]
    assert parse_list("fp16, fp32", PRECISIONS, "--precision") == ["fp32", "fp16"]
    with pytest.raises(UserError, match=r"^--precision: unknown fp8"):
        parse_list("bf16,fp8", PRECISIONS, "--precision")
    # fp16 on CPU runs only when named: its convolution backward would take hours.
    kept, notes = usable_precisions(list(PRECISIONS), "cpu", explicit=False)
    assert kept == ["fp32", "bf16"] and len(notes) == 1 and "fp16 skipped on cpu" in notes[0]
    assert usable_precisions(["fp16"], "cpu", explicit=True) == (["fp16"], [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_gpu_without_a_gpu_says_so_in_one_line():
    out = subprocess.run([sys.executable, "-m", "mtlsearch.cli", "bench", "gpu"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "bench gpu: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing measured"
    ]


def test_bench_gpu_search_shares_one_gpu_between_two_trials(tmp_path):
    from mtlsearch.bench.gpu import search_space
    from mtlsearch.space import load_space

    for concurrent in (1, 2):
        path = tmp_path / f"{concurrent}.yaml"
        path.write_text(yaml.safe_dump(search_space(str(tmp_path / "cache"), 10, concurrent, 3)))
        space = load_space(path)
        assert space.resources.gpus_per_worker == 0.5 and space.resources.cpus_per_worker == 3
        assert space.max_concurrent_trials == concurrent
        trials = [space.tree(v) for v in space.expand()]
        assert [t["train"]["seed"] for t in trials] == [0, 1]
        assert load_config(trials[0]).regularizer.enabled


def test_bench_gpu_models_are_the_papers():
    from mtlsearch.bench.gpu import model_config

    invpt, mtinet = model_config("invpt", (448, 576)), model_config("mtinet", (448, 576))
    assert (invpt.model.decoder, invpt.model.backbone, invpt.model.decoder_width) == (
        "invpt", "vit_large_patch16_384", 512)
    assert (mtinet.model.decoder, mtinet.model.backbone) == ("mtinet", "hrnet_w48")
    assert tuple(mtinet.data.crop_size) == tuple(invpt.data.crop_size) == (448, 576)
