"""``mtlsearch bench model``: what the 3D-aware regularizer costs, and that export drops it.

``--decoder invpt|mtinet`` measures the papers' base models at their published size
(InvPT: ViT-L/16, width 512; MTI-Net: HRNet-W48; NYUD's 4 tasks with 40 classes) unless
``--backbone`` / ``--set`` say otherwise; their training step includes the deep-supervision
terms. Four settings, each measured in a fresh Python subprocess so peak memory is honest:

* ``train``: training step (forward, Eq. 2 loss, backward, Adam step) without the regularizer;
* ``train+reg``: the same with the regularizer rendering every task;
* ``infer``: eval-mode forward of the model built without the regularizer;
* ``infer exported``: eval-mode forward of ``export()`` of the regularized model.

Time is the mean over ``--steps`` steps after one warm-up step. Peak memory on CPU is
what the steps add to the process's resident set (activations, gradients, optimiser state):
the peak RSS during the steps minus the RSS after building the model and batch. On Linux
the kernel's high-water mark is reset after the build (``/proc/self/clear_refs``), so the
build's own peak does not hide the steps'; elsewhere it falls back to ``ru_maxrss``
deltas. On CUDA it is ``torch.cuda.max_memory_allocated`` after a reset.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from mtlsearch.config import load_config
from mtlsearch.errors import UserError

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

    cfg = load_config(spec["config"], {"regularizer.enabled": spec["regularizer"]})
    device = torch.device(spec["device"])
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
    labels = {k: v.to(device) for k, v in _labels(cfg, model, batch, (h, w)).items()}
    training = spec["mode"] == "train"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4) if training else None
    model.train(training)
    alpha = cfg.regularizer.alpha.max

    def step() -> None:
        if training:
            out = model(image)
            total, _ = compute_losses(out, labels, cfg, alpha)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                model(image)
        if cuda:
            torch.cuda.synchronize()

    gc.collect()
    base_rss, _ = _rss_kib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    seconds = (time.perf_counter() - start) / spec["steps"]
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


def run_cli(args: argparse.Namespace) -> int:
    """Print step time and peak memory with and without the regularizer, and the exported
    model's parameters and inference time beside the base model's."""
    import torch

    decoder = getattr(args, "decoder", None)
    preset: dict[str, Any] = {}
    if decoder:
        preset = {"model.decoder": decoder, **PAPER_MODELS.get(decoder, {})}
    cfg = load_config(None, [f"{k}={v}" for k, v in preset.items()] + list(args.overrides or []))
    if args.backbone:
        cfg = load_config(cfg, {"model.backbone": args.backbone})
    # The timed size is the training crop (InvPT's ViT learns its position embedding there).
    cfg = load_config(cfg, {"data.crop_size": list(args.size)})
    num_classes = PAPER_CLASSES if decoder in PAPER_MODELS else None
    if args.steps <= 0 or args.batch <= 0:
        raise UserError(f"--steps and --batch must be positive, got {args.steps}, {args.batch}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    h, w = args.size
    reg = cfg.regularizer
    rh, rw = max(1, round(h * reg.render_scale)), max(1, round(w * reg.render_scale))
    print(
        f"bench model: {cfg.model.backbone} + {cfg.model.decoder}, input {h}x{w}, renders {rh}x{rw}, "
        f"{len(cfg.task_names)} tasks, batch {args.batch}, {args.steps} timed steps, {device}"
    )
    results: dict[str, dict[str, Any]] = {}
    for name, regularizer, mode in SETTINGS:
        print(f"  measuring {name} ...", file=sys.stderr, flush=True)
        spec = {
            "config": cfg.to_dict(),
            "regularizer": regularizer,
            "mode": mode,
            "device": device,
            "size": [h, w],
            "batch": args.batch,
            "steps": args.steps,
            "num_classes": num_classes,
        }
        results[name] = _run_fresh(spec)
    mem = "peak MiB" if device == "cuda" else "peak RSS delta MiB"
    print(f"{'setting':<16} {'time/step s':>12} {mem:>20} {'params':>12}")
    for name, r in results.items():
        print(f"{name:<16} {r['seconds']:>12.3f} {r['peak_mib']:>20.1f} {r['params']:>12,}")
    base, regd = results["train"], results["train+reg"]
    print(
        f"regularizer cost: time x{regd['seconds'] / base['seconds']:.2f}, "
        f"memory x{regd['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}, "
        f"+{regd['params'] - base['params']:,} params (training only)"
    )
    plain = results["infer"]
    decoder_only = plain["params"] - plain["backbone_params"] - plain["head_params"]
    print(
        f"base model parameters: {plain['params']:,} (backbone {plain['backbone_params']:,}, "
        f"decoder {decoder_only:,}, heads {plain['head_params']:,})"
    )
    same = results["infer exported"]["params"] == results["infer"]["params"]
    print(
        f"exported params {'==' if same else '!='} base params; inference time ratio "
        f"x{results['infer exported']['seconds'] / results['infer']['seconds']:.2f}"
    )
    return 0 if same else 1
