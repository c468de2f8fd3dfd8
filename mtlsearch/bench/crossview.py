"""``mtlsearch bench crossview``: time and peak memory of the cross-view module.

Sweeps the number of depth planes L (at V = 2 views) and the number of views V (at
L = 128) for one batch of input ``8h x 8w`` (feature size ``h x w``, default 56x72, i.e.
448x576 input), timing the forward pass (no autograd) and forward + backward, then
compares the peak memory of the cost volume alone computed in chunks of
``cvm.chunk_planes`` planes against all planes at once.

Every setting runs in a fresh subprocess so peak memory is clean: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of ``ru_maxrss`` (the process's
resident high-water mark) from just before the measured call to just after, so
figures are "extra peak memory" over the model, inputs and interpreter.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from mtlsearch.errors import UserError

_MARK = "CROSSVIEW-RESULT "


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(job: dict[str, Any]) -> dict[str, float]:
    """Run one setting in this (fresh) process; returns seconds per call and peak MiB."""
    import torch

    from mtlsearch.config import CvmConfig
    from mtlsearch.models.crossview import (
        CrossViewModule,
        cost_volume,
        count_parameters,
        inverse_depth_planes,
    )

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    h, w = job["size"]
    L, V, train = job["planes"], job["views"], job["train"]
    cfg = CvmConfig(depth_planes=L, num_views=max(V, 2))
    result: dict[str, float] = {}
    if job["kind"] == "module":
        model = CrossViewModule(cfg).to(device).train(train)
        result["params"] = count_parameters(model)
        H, W = 8 * h, 8 * w
        image = torch.randn(1, 3, H, W, device=device)
        src = torch.randn(1, V - 1, 3, H, W, device=device) if V > 1 else None
        K = torch.tensor([[0.9 * W, 0, (W - 1) / 2], [0, 0.9 * W, (H - 1) / 2], [0, 0, 1]],
                         device=device)[None]
        rel = torch.eye(4, device=device).repeat(1, max(V - 1, 1), 1, 1)
        rel[:, :, 0, 3] = -0.1 * torch.arange(1, max(V, 2), device=device)

        def call() -> None:
            with torch.set_grad_enabled(train):
                out = model(image, src, K if V > 1 else None, None, rel if V > 1 else None)
                if train:
                    out.square().mean().backward()
                    model.zero_grad(set_to_none=True)
    else:
        C = cfg.width
        ref = torch.randn(1, C, h, w, device=device, requires_grad=train)
        srcf = torch.randn(1, 1, C, h, w, device=device, requires_grad=train)
        K = torch.tensor([[0.9 * w, 0, (w - 1) / 2], [0, 0.9 * w, (h - 1) / 2], [0, 0, 1]],
                         device=device)[None]
        rel = torch.eye(4, device=device)[None, None].clone()
        rel[..., 0, 3] = -0.1
        depths = inverse_depth_planes(cfg.near, cfg.far, L, device)
        chunk = job["chunk"]

        def call() -> None:
            with torch.set_grad_enabled(train):
                cv = cost_volume(ref, srcf, K, K[:, None], rel, depths, chunk)
                if train:
                    cv.square().mean().backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mib()
    sync()
    start = time.perf_counter()
    call()  # warm-up; its peak is the setting's peak
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(job["repeats"]):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mib()
    result["seconds"] = sorted(times)[len(times) // 2] if times else first
    result["peak_mib"] = peak - base
    result["device"] = device.type
    return result


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_measure` in a fresh interpreter and parse its result line."""
    code = (
        "import json, sys; from mtlsearch.bench.crossview import _measure, _MARK; "
        "print(_MARK + json.dumps(_measure(json.loads(sys.argv[1]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(job)], capture_output=True, text=True
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise RuntimeError(f"benchmark subprocess failed for {job}:\n{proc.stderr[-2000:]}")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.rjust(n) for h, n in zip(header, widths)) + " |"
    rule = "|" + "|".join("-" * (n + 1) + ":" for n in widths) + "|"
    body = ["| " + " | ".join(c.rjust(n) for c, n in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


def run_benchmark(
    size: tuple[int, int], planes: list[int], views: list[int], repeats: int = 1,
    cost_planes: tuple[int, ...] = (128, 512),
) -> dict[str, list[dict[str, Any]]]:
    """Run the sweeps; print progress to stderr and return the measured rows."""
    from mtlsearch.config import CvmConfig

    chunk = CvmConfig().chunk_planes
    settings = [(L, 2) for L in planes] + [(128, V) for V in views if (128, V) not in
                                           [(L, 2) for L in planes]]
    module_rows = []
    for L, V in settings:
        row: dict[str, Any] = {"planes": L, "views": V}
        for train in (False, True):
            job = {"kind": "module", "size": size, "planes": L, "views": V, "train": train,
                   "repeats": repeats}
            res = _run_job(job)
            key = "fwd_bwd" if train else "fwd"
            row[f"{key}_s"], row[f"{key}_peak_mib"] = res["seconds"], res["peak_mib"]
            row["params"], row["device"] = res["params"], res["device"]
        print(f"[bench crossview] L={L} V={V}: fwd {row['fwd_s']:.2f} s, "
              f"fwd+bwd {row['fwd_bwd_s']:.2f} s", file=sys.stderr, flush=True)
        module_rows.append(row)
    cost_rows = []
    for L in cost_planes:
        for c in (chunk, L):
            row = {"planes": L, "chunk": c}
            for train in (False, True):
                job = {"kind": "cost", "size": size, "planes": L, "views": 2, "train": train,
                       "chunk": c, "repeats": repeats}
                res = _run_job(job)
                key = "fwd_bwd" if train else "fwd"
                row[f"{key}_s"], row[f"{key}_peak_mib"] = res["seconds"], res["peak_mib"]
            print(f"[bench crossview] cost volume L={L} chunk={c}: fwd peak "
                  f"{row['fwd_peak_mib']:.0f} MiB", file=sys.stderr, flush=True)
            cost_rows.append(row)
    return {"module": module_rows, "cost_volume": cost_rows}


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``mtlsearch bench crossview``: print the two tables."""
    h, w = args.size
    planes, views = list(args.planes), list(args.views)
    repeats = getattr(args, "repeats", 1)
    if any(L < 1 for L in planes):
        raise UserError(f"--planes: every value must be positive, got {planes}")
    if any(V < 1 for V in views):
        raise UserError(f"--views: every value must be >= 1, got {views}")
    if repeats < 0:
        raise UserError(f"--repeats: must be >= 0, got {repeats}")
    rows = run_benchmark((h, w), planes, views, repeats)
    dev = rows["module"][0]["device"] if rows["module"] else "cpu"
    mem = "peak MiB (CUDA max allocated)" if dev == "cuda" else "peak MiB (ru_maxrss growth)"
    print(f"\nCross-view module, batch 1, features {h}x{w} (input {8 * h}x{8 * w}), "
          f"device {dev}; {mem}")
    print(_table(
        ["L", "V", "params", "fwd s", "fwd MiB", "fwd+bwd s", "fwd+bwd MiB"],
        [[str(r["planes"]), str(r["views"]), f"{r['params'] / 1e6:.2f}M", f"{r['fwd_s']:.3f}",
          f"{r['fwd_peak_mib']:.0f}", f"{r['fwd_bwd_s']:.3f}", f"{r['fwd_bwd_peak_mib']:.0f}"]
         for r in rows["module"]],
    ))
    print(f"\nCost volume alone (C=128, one neighbour, {h}x{w}): chunked vs all planes at once")
    print(_table(
        ["L", "chunk", "fwd s", "fwd MiB", "fwd+bwd s", "fwd+bwd MiB"],
        [[str(r["planes"]), str(r["chunk"]), f"{r['fwd_s']:.3f}", f"{r['fwd_peak_mib']:.0f}",
          f"{r['fwd_bwd_s']:.3f}", f"{r['fwd_bwd_peak_mib']:.0f}"] for r in rows["cost_volume"]],
    ))
    return 0
