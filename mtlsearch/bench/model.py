"""``mtlsearch bench model``: what the 3D-aware regularizer costs, and that export drops it.

``--decoder invpt|mtinet`` measures the papers' base models at their published size
(InvPT: ViT-L/16, width 512; MTI-Net: HRNet-W48; NYUD's 4 tasks with 40 classes) unless
``--backbone`` / ``--set`` say otherwise; their training step includes the deep-supervision
terms. ``--config`` measures a config file instead (its crop size and batch unless
``--size`` / ``--batch`` say otherwise). Four settings (``--settings``), each in each
precision of ``--precision`` (default fp32, bf16, fp16; fp16 is skipped with a note where
torch cannot run it, and on CPU unless asked for), each measured in a fresh Python
subprocess so peak memory is honest:

* ``train``: training step (forward, Eq. 2 loss, backward, the config's optimizer step)
  without the regularizer, exactly as :mod:`mtlsearch.train` runs it
  (:mod:`mtlsearch.precision`: autocast, float32 losses, GradScaler for fp16);
* ``train+reg``: the same with the regularizer rendering every task;
* ``infer``: eval-mode forward of the model built without the regularizer;
* ``infer exported``: eval-mode forward of ``export()`` of the regularized model.

``--channels-last`` sets ``train.channels_last``; ``--threads`` the torch threads of the
measuring process (a search trial on 1 CPU runs with 1). Time is the median of
``--steps`` steps after one warm-up step (robust to other jobs' bursts on a shared
machine). Peak memory on CPU is what the steps add to the process's resident set
(activations, gradients, optimiser state):
the peak RSS during the steps minus the RSS after building the model and batch. On Linux
the kernel's high-water mark is reset after the build (``/proc/self/clear_refs``), so the
build's own peak does not hide the steps'; elsewhere it falls back to ``ru_maxrss``
deltas. On CUDA it is ``torch.cuda.max_memory_allocated`` after a reset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.precision import PRECISIONS

PAPER_MODELS: dict[str, dict[str, Any]] = {
    "invpt": {"model.backbone": "vit_large_patch16_384", "model.decoder_width": 512},
    "mtinet": {"model.backbone": "hrnet_w48"},
}
"""Published architectures of ``--decoder`` (NYUD: semseg has 40 classes)."""
PAPER_CLASSES = {"semseg": 40}

SETTINGS = (
    ("train", False, "train"),
    ("train+reg", True, "train"),
    ("infer", False, "infer"),
    ("infer exported", True, "export"),
)
SETTING_NAMES = tuple(name for name, _, _ in SETTINGS)


def parse_list(text: str | None, known: tuple[str, ...], option: str) -> list[str]:
    """A comma-separated subset of ``known`` (all of them when ``text`` is empty), in
    the order of ``known``; an unknown name is a :class:`UserError` naming ``option``."""
    if not text:
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise UserError(f"{option}: unknown {', '.join(bad) or repr(text)} (known: {', '.join(known)})")
    return [n for n in known if n in names]


def _labels(cfg: Any, model: Any, batch: int, size: tuple[int, int]) -> dict[str, Any]:
    """Random labels in each task's convention (values only matter for the loss's cost)."""
    import torch

    h, w = size
    out = {}
    for task, channels in model.task_channels.items():
        if task in ("semseg", "parts"):
            out[task] = torch.randint(0, channels, (batch, h, w))
        elif task == "depth":
            out[task] = torch.rand(batch, 1, h, w) * 9 + 0.5
        elif task == "normals":
            out[task] = torch.nn.functional.normalize(torch.randn(batch, 3, h, w), dim=1)
        else:
            out[task] = (torch.rand(batch, 1, h, w) > 0.9).float()
    return out


def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB; the peak resets to the current value if possible."""
    import resource

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0])
        return fields["VmRSS"], fields["VmHWM"]
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def _peak_kib() -> int:
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one setting in this process (run it in a fresh one)."""
    import gc

    import torch

    from mtlsearch.models import build_model, compute_losses, count_parameters
    from mtlsearch.precision import (
        autocast,
        check_precision,
        float32,
        make_scaler,
        optimizer_step,
        to_channels_last,
    )
    from mtlsearch.train import make_optimizer

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    precision = spec.get("precision", "fp32")
    channels_last = bool(spec.get("channels_last"))
    cfg = load_config(spec["config"], {"regularizer.enabled": spec["regularizer"]})
    device = torch.device(spec["device"])
    check_precision(precision, device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(cfg, spec.get("num_classes"))
    parts = {
        "backbone_params": count_parameters(model.backbone),
        "head_params": count_parameters(model.decoder.heads),
    }
    if spec["mode"] == "export":
        model = model.export()
    model.to(device)
    h, w = spec["size"]
    batch = spec["batch"]
    image = torch.randn(batch, 3, h, w, device=device)
    if channels_last:
        model = to_channels_last(model)
        image = image.contiguous(memory_format=torch.channels_last)
    labels = {k: v.to(device) for k, v in _labels(cfg, model, batch, (h, w)).items()}
    training = spec["mode"] == "train"
    optimizer = make_optimizer(model, cfg.train) if training else None
    scaler = make_scaler(precision, device) if training else None
    model.train(training)
    alpha = cfg.regularizer.alpha.max

    def step() -> None:
        if training:
            with autocast(precision, device):
                out = model(image)
            total, _ = compute_losses(float32(out), labels, cfg, alpha)
            optimizer_step(total, optimizer, scaler, model.parameters(), cfg.train.grad_clip)
        else:
            with torch.no_grad(), autocast(precision, device):
                model(image)
        if cuda:
            torch.cuda.synchronize()

    gc.collect()
    base_rss, _ = _rss_kib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    if cuda:
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = (_peak_kib() - base_rss) / 1024
    return {
        "seconds": seconds,
        "peak_mib": peak_mib,
        "params": count_parameters(model),
        **parts,
        "rendered": len(cfg.rendered_tasks) if spec["regularizer"] and training else 0,
    }


def _worker() -> None:
    """Subprocess entry: read a spec as JSON on stdin, print the result as JSON."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(measure(spec)))


def _run_fresh(spec: dict[str, Any]) -> dict[str, Any]:
    code = "from mtlsearch.bench.model import _worker; _worker()"
    proc = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(spec), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _config(args: argparse.Namespace) -> tuple[Any, tuple[int, int], int, dict[str, int] | None]:
    """The measured config, input size, batch and class counts of the arguments."""
    decoder = getattr(args, "decoder", None)
    preset: dict[str, Any] = {}
    if decoder:
        preset = {"model.decoder": decoder, **PAPER_MODELS.get(decoder, {})}
    config = getattr(args, "config", None)
    cfg = load_config(config, [f"{k}={v}" for k, v in preset.items()] + list(args.overrides or []))
    if args.backbone:
        cfg = load_config(cfg, {"model.backbone": args.backbone})
    size = args.size or (tuple(cfg.data.crop_size) if config else (448, 576))
    batch = args.batch or (cfg.train.batch_size if config else 2)
    # The timed size is the training crop (InvPT's ViT learns its position embedding there).
    cfg = load_config(cfg, {"data.crop_size": list(size)})
    num_classes = PAPER_CLASSES if decoder in PAPER_MODELS else None
    return cfg, (int(size[0]), int(size[1])), int(batch), num_classes


def measure_all(
    cfg: Any,
    size: tuple[int, int],
    batch: int,
    steps: int,
    device: str,
    precisions: list[str],
    settings: list[str],
    *,
    num_classes: dict[str, int] | None = None,
    channels_last: bool = False,
    threads: int | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """{(setting, precision): result of :func:`measure`}, each in a fresh subprocess;
    the precisions of one setting are measured back to back (load drifts less)."""
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for name, regularizer, mode in SETTINGS:
        if name not in settings:
            continue
        for precision in precisions:
            print(f"  measuring {name} {precision} ...", file=sys.stderr, flush=True)
            spec = {
                "config": cfg.to_dict(),
                "regularizer": regularizer,
                "mode": mode,
                "device": device,
                "size": list(size),
                "batch": batch,
                "steps": steps,
                "num_classes": num_classes,
                "precision": precision,
                "channels_last": channels_last,
                "threads": threads,
            }
            results[(name, precision)] = _run_fresh(spec)
    return results


def usable_precisions(
    requested: list[str], device: str, explicit: bool = True
) -> tuple[list[str], list[str]]:
    """(precisions to measure on ``device``, a note per skipped one). fp16 is skipped
    where torch cannot run it and, unless asked for (``explicit``), on CPU, where its
    convolution backward is a fallback that would run for hours at the default size."""
    from mtlsearch.precision import fp16_problem

    keep, notes = [], []
    for precision in requested:
        problem = fp16_problem(device) if precision == "fp16" else None
        if problem:
            notes.append(f"fp16 skipped: not supported on {device} ({problem})")
        elif precision == "fp16" and device == "cpu" and not explicit:
            notes.append("fp16 skipped on cpu (its convolution backward is a slow fallback, "
                         "about 1000x fp32's); --precision fp16 measures it anyway")
        else:
            keep.append(precision)
    return keep, notes


def run_cli(args: argparse.Namespace) -> int:
    """Print step time and peak memory of each setting in each precision, what the
    regularizer costs, each precision's speed-up over fp32, and the exported model's
    parameters and inference time beside the base model's."""
    import torch

    cfg, (h, w), batch, num_classes = _config(args)
    if args.steps <= 0 or batch <= 0:
        raise UserError(f"--steps and --batch must be positive, got {args.steps}, {batch}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads <= 0:
        raise UserError(f"--threads must be positive, got {threads}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    requested = getattr(args, "precision", None)
    precisions, notes = usable_precisions(
        parse_list(requested, PRECISIONS, "--precision"), device, explicit=bool(requested)
    )
    settings = parse_list(getattr(args, "settings", None), SETTING_NAMES, "--settings")
    if not precisions:
        raise UserError(f"--precision: none of the requested precisions runs on {device}")
    channels_last = bool(getattr(args, "channels_last", False))
    reg = cfg.regularizer
    rh, rw = max(1, round(h * reg.render_scale)), max(1, round(w * reg.render_scale))
    print(
        f"bench model: {cfg.model.backbone} + {cfg.model.decoder}, input {h}x{w}, renders {rh}x{rw} "
        f"({reg.samples_per_ray} samples/ray), {len(cfg.task_names)} tasks, batch {batch}, "
        f"{args.steps} timed steps, {device}, {threads or torch.get_num_threads()} threads"
        + (", channels_last" if channels_last else "")
    )
    for note in notes:
        print(note)
    results = measure_all(cfg, (h, w), batch, args.steps, device, precisions, settings,
                          num_classes=num_classes, channels_last=channels_last, threads=threads)
    mem = "peak MiB" if device == "cuda" else "peak RSS delta MiB"
    print(f"{'setting':<16} {'precision':<9} {'time/step s':>12} {mem:>20} {'params':>12}")
    for (name, precision), r in results.items():
        print(f"{name:<16} {precision:<9} {r['seconds']:>12.3f} {r['peak_mib']:>20.1f} {r['params']:>12,}")
    for precision in precisions:
        base, regd = results.get(("train", precision)), results.get(("train+reg", precision))
        if base and regd:
            print(
                f"regularizer cost ({precision}): time x{regd['seconds'] / base['seconds']:.2f}, "
                f"memory x{regd['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}, "
                f"+{regd['params'] - base['params']:,} params (training only)"
            )
    for name in settings:
        ref = results.get((name, "fp32"))
        others = [p for p in precisions if p != "fp32"]
        if ref and others:
            ratios = ", ".join(f"{p} x{ref['seconds'] / results[(name, p)]['seconds']:.2f}" for p in others)
            print(f"speed-up over fp32 ({name}): {ratios}")
    plain = results.get(("infer", precisions[0]))
    if plain:
        decoder_only = plain["params"] - plain["backbone_params"] - plain["head_params"]
        print(
            f"base model parameters: {plain['params']:,} (backbone {plain['backbone_params']:,}, "
            f"decoder {decoder_only:,}, heads {plain['head_params']:,})"
        )
    exported = results.get(("infer exported", precisions[0]))
    if plain and exported:
        same = exported["params"] == plain["params"]
        print(
            f"exported params {'==' if same else '!='} base params; inference time ratio "
            f"x{exported['seconds'] / plain['seconds']:.2f} ({precisions[0]})"
        )
        return 0 if same else 1
    return 0
