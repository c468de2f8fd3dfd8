"""Seeded bad inputs for ``tests/test_fuzz.py``, and the harness that runs one.

Contract: :func:`generate_cases` returns, for a seed, the same list of :class:`Case`
objects: at least 300 bad inputs over search spaces and profiles (mutations of the shipped
ones), configs, ``train --set`` values, CLI arguments and folders (broken search folders,
corrupt datasets and checkpoints, existing folders as ``--out``), plus a few good
controls. Each case builds its files in its own folder and gives an argv for
``mtlsearch.cli.main``. :func:`run_case` runs it in-process with a time limit and
returns an :class:`Outcome`: what happened (clean error, exit 0, traceback, hang) and
which files that existed before changed. Nothing here starts Ray or trains:
:data:`GUARDS` lists the entry points a run must never reach (they raise
:class:`Reached`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SPACES = REPO / "search_spaces"
TIME_LIMIT_S = 30.0
"""Per case; the slowest good case (a report with its plots) takes about 2 s."""


class Reached(BaseException):
    """A guarded entry point (data generation, Ray, a search start) was reached: the
    input got through every check."""


class CaseTimeout(BaseException):
    """The case ran past :data:`TIME_LIMIT_S`."""


GUARDS = (
    ("mtlsearch.data.pipeline", "resolve_root"),
    ("mtlsearch.execution.search", "run_search"),
    ("ray", "init"),
)
"""(module, attribute) the fuzz test replaces by :func:`make_guard`'s function."""


def make_guard(module: str, attr: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in raising :class:`Reached`; ``resolve_root`` still resolves an existing
    ``data.root`` (only SynthRooms generation is stopped), so dataset checks run."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if attr == "resolve_root" and args and getattr(args[0].data, "root", ""):
            return original(*args, **kwargs)
        raise Reached(f"{module}.{attr}")

    return guarded


@dataclass
class Fixtures:
    """Valid inputs built once; cases copy what they need into their own folder."""

    root: Path
    spaces: Path
    dataset: Path
    checkpoint: Path
    search: Path
    config: Path


@dataclass
class Case:
    category: str
    name: str
    build: Callable[[Path, Fixtures], list[str]]
    """Writes the case's files into its folder (the cwd while it runs); returns argv."""
    expect: str = "error"
    """``error``: must fail cleanly; ``any``: may also succeed (tolerated damage);
    ``ok``: a good control that must succeed; ``reached``: a good control that must get
    through every check to a guarded entry point."""
    may_replace: tuple[str, ...] = ()
    """Folders (relative) holding an earlier mtlsearch output the case may replace."""
    mentions: str | None = None
    """Text the error must contain (the key, file or flag at fault)."""


@dataclass
class Outcome:
    kind: str
    """``clean`` (non-zero exit with an error line), ``exit0``, ``traceback``, ``hang``,
    ``reached`` (a guarded entry point), ``unclean`` (non-zero exit without a message)."""
    code: int | None = None
    stderr: str = ""
    stdout: str = ""
    detail: str = ""
    changed: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

TINY_MODEL = {
    "model.backbone": "mobilenetv3_small_050", "model.decoder_width": 8,
    "tasks": {"semseg": 1.0, "depth": 1.0},
}


def build_fixtures(root: Path) -> Fixtures:
    """Spaces copy, a 2-room SynthRooms, a tiny checkpoint, a hand-made search, a config."""
    import torch

    from mtlsearch.checkpoint import save_checkpoint
    from mtlsearch.config import load_config
    from mtlsearch.data.synthrooms import generate
    from mtlsearch.models import build_model
    from tests.searchdirs import make_search

    root.mkdir(parents=True, exist_ok=True)
    spaces = root / "search_spaces"
    shutil.copytree(SPACES, spaces)
    dataset = generate(root / "synth", scenes=2, views=2, size=(16, 16), seed=0,
                       val_fraction=0.5, workers=1, progress=False)
    torch.manual_seed(0)
    cfg = load_config(None, TINY_MODEL)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    ckpt = save_checkpoint(root / "ckpt", model=model, optimizer=opt, scheduler=sched, step=3,
                           config=cfg.to_dict())
    search = make_search(root / "trials", "hand", trials=2)  # 2 trials: no fANOVA (slow)
    from mtlsearch.report import build_report

    build_report(search, out=root / "warm-up-report", formats=["md"])  # imports, font cache
    from mtlsearch.cli import main

    # A dry run's first model check imports a lot: not part of any case's time.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(["search", str(spaces / "demo.yaml"), "--profile", "cpu", "--dry-run",
              "--storage", str(root / "warm-up-trials")])
    config = root / "config.yaml"
    config.write_text("tasks: {semseg: 1.0, depth: 1.0}\ndata: {layout: synthrooms}\n"
                      "train: {iterations: 10, eval_every: 5}\n")
    return Fixtures(root, spaces, dataset, ckpt, search, config)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below ``folder`` (links not followed)."""
    out = {}
    for base, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(base) / name
            if path.is_symlink():
                out[str(path.relative_to(folder))] = "link:" + os.readlink(path)
                continue
            try:
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as err:
                out[str(path.relative_to(folder))] = f"unreadable: {err}"
    return out


# ---------------------------------------------------------------------------
# Bad values (each one a value a config schema must refuse)
# ---------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, str]] = [
    ("train.lr", "-0.01"), ("train.lr", ".nan"), ("train.lr", ".inf"), ("train.lr", "0"),
    ("train.lr", "abc"), ("train.weight_decay", "-0.0001"), ("train.momentum", "-0.5"),
    ("regularizer.alpha.max", "-1"), ("regularizer.alpha.max", ".nan"),
    ("train.log_every", "0"), ("train.log_every", "-10"), ("cvm.heads", "0"),
    ("cvm.window_splits", "0"), ("model.decoder_width", "0"), ("model.decoder_width", "-8"),
    ("model.decoder_width", "true"), ("eval.edge_thresholds", "0"), ("train.iterations", "-5"),
    ("train.iterations", "1.5"), ("train.batch_size", "0"), ("train.seed", "-1"),
    ("data.fraction", "1.5"), ("data.fraction", "0"), ("data.fraction", "-0.25"),
    ("regularizer.tasks", "[]"), ("regularizer.tasks", "[nosuchtask]"),
    ("model.backbone", "notamodel"), ("model.decoder", "nosuchdecoder"),
    ("data.source_tasks", "[nosuchtask]"), ("model.pretrained_path", "/nonexistent/weights.pth"),
    ("data.crop_size", "[0, 0]"), ("data.crop_size", "[-64, 80]"),
    ("data.scale_range", "[2.0, 1.0]"), ("data.scale_range", "[0, 1]"),
    ("data.val_size", "[-1, -1]"), ("model.out_indices", "[9]"), ("model.out_indices", "[]"),
    ("regularizer.samples_per_ray", "0"), ("regularizer.triplane_width", "-32"),
    ("regularizer.dropout", "1.5"), ("regularizer.density_activation", "tanhh"),
    ("regularizer.alpha.schedule", "nosuch"), ("regularizer.alpha.ramp_fraction", "2.0"),
    ("regularizer.render_scale", "0"), ("cvm.depth_planes", "0"), ("cvm.near", "-1"),
    ("cvm.far", "0"), ("cvm.num_views", "0"), ("cvm.width", "0"),
    ("train.optimizer", "nosuch"), ("data.layout", "nosuch"), ("data.num_workers", "-1"),
    ("data.synth.scenes", "0"), ("data.synth.views", "0"),
    ("data.synth.size", "[100000, 100000]"), ("data.synth.val_fraction", "1.5"),
    ("train.eval_every", "0"), ("train.grad_clip", "-1"), ("eval.edge_max_dist", "-0.1"),
    ("cvm.chunk_planes", "0"), ("train.poly_power", "-1"), ("tasks", "{}"),
    ("tasks", "{nosuch: 1.0}"), ("tasks", "{semseg: -1.0}"), ("tasks", "{semseg: .nan}"),
    ("nosuch.key", "1"), ("train.nosuch", "1"), ("regularizer.alpha.mx", "1"),
]

def _value(text: str) -> Any:
    return yaml.safe_load(text)


def alias_bomb(levels: int = 9, width: int = 10) -> str:
    """A "billion laughs" YAML flow value: a list whose last item expands, alias by
    alias, to ``width ** levels`` leaves."""
    items = [f"&a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        items.append(f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return f"[{', '.join(items)}]"


def nested(depth: int = 10000) -> str:
    return "[" * depth + "]" * depth


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


BOMB_PNG = _png_header(60000, 60000)
LARGE_PNG = _png_header(10000, 9000)


# ---------------------------------------------------------------------------
# Helpers for case builders
# ---------------------------------------------------------------------------


def _spaces(d: Path, fx: Fixtures) -> Path:
    dst = d / "search_spaces"
    if not dst.exists():
        shutil.copytree(fx.spaces, dst)
    return dst


def _load_space(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPACES / f"{name}.yaml").read_text())


def _dump(tree: Any) -> str:
    return yaml.safe_dump(tree, sort_keys=False)


def _dry(space: str, *extra: str) -> list[str]:
    return ["search", space, "--dry-run", "--storage", "trials", *extra]


def _space_case(name: str, mutate: Callable[[dict[str, Any]], Any], profile: str | None = None,
                raw: bool = False) -> Callable[[Path, Fixtures], list[str]]:
    """A shipped space mutated (``mutate`` returns the new tree, or text/bytes). Without a
    profile by default: a profile applies over ``fixed`` and could undo the mutation."""

    def build(d: Path, fx: Fixtures) -> list[str]:
        spaces = _spaces(d, fx)
        tree = _load_space(name)
        result = mutate(tree)
        path = spaces / f"{name}.yaml"
        if isinstance(result, bytes):
            path.write_bytes(result)
        else:
            path.write_text(result if isinstance(result, str) else _dump(result))
        return _dry(str(path), *(["--profile", profile] if profile else []))

    return build


def _set(tree: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    tree.setdefault(section, {})
    if not isinstance(tree[section], dict):
        tree[section] = {}
    tree[section][key] = value
    return tree


def _put(path: Path, content: str | bytes) -> Path:
    """Write ``content`` at ``path`` (parents created); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _copy_search(d: Path, fx: Fixtures) -> Path:
    dst = d / "trials" / "hand"
    shutil.copytree(fx.search, dst)
    return dst


def _copy_dataset(d: Path, fx: Fixtures) -> Path:
    dst = d / "ds"
    shutil.copytree(fx.dataset, dst)
    return dst


def _first_id(ds: Path, split: str = "train") -> str:
    return (ds / "gt_sets" / f"{split}.txt").read_text().split()[0]


# ---------------------------------------------------------------------------
# Case families
# ---------------------------------------------------------------------------

SPACE_NAMES = sorted(p.stem for p in SPACES.glob("*.yaml"))


def _space_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def add(name: str, label: str, mutate: Callable[[dict[str, Any]], Any], mentions: str | None = None,
            **kw: Any) -> None:
        cases.append(Case("space", f"{name}: {label}", _space_case(name, mutate, **kw), mentions=mentions))

    fixed_values = BAD_VALUES
    for name in rng.sample(SPACE_NAMES, 3):
        cases.append(Case("control", f"{name}: round trip", _space_case(name, lambda t: t), "ok"))
    for name in SPACE_NAMES:
        picks = rng.sample(fixed_values, 3)
        for key, value in picks:
            add(name, f"fixed {key}={value}", lambda t, k=key, v=value: _set(t, "fixed", k, _value(v)),
                mentions=key)
        key, value = rng.choice(BAD_VALUES)
        add(name, f"grid {key}: [{value}]",
            lambda t, k=key, v=value: _set(t, "space", k, {"grid": [_value(v)]}), mentions=key)
    structural: list[tuple[str, Callable[[dict[str, Any]], Any], dict[str, Any]]] = [
        ("unknown top-level key", lambda t: {**t, "nosuchkey": 1}, {}),
        ("top level is a list", lambda t: "- a\n- b\n", {}),
        ("top level is a number", lambda t: "5\n", {}),
        ("empty file", lambda t: "", {}),
        ("broken YAML", lambda t: "space: {a: [1, 2\n", {}),
        ("non-UTF-8 bytes", lambda t: b"name: \xff\xfe\x00bad\n" + _dump(t).encode(), {}),
        ("UTF-16 file", lambda t: _dump(t).encode("utf-16"), {}),
        ("binary garbage", lambda t: bytes(random.Random(1).randrange(256) for _ in range(512)), {}),
        ("alias bomb in fixed", lambda t: _dump({k: v for k, v in t.items() if k != "fixed"})
         + f"fixed: {{model.out_indices: {alias_bomb()}}}\n", {}),
        ("alias bomb in a grid", lambda t: _dump({k: v for k, v in t.items() if k != "space"})
         + f"space: {{model.out_indices: {{grid: {alias_bomb()}}}}}\n", {}),
        ("alias bomb in the baseline", lambda t: _dump({k: v for k, v in t.items() if k != "baseline"})
         + f"baseline: {{model.out_indices: {alias_bomb()}}}\n", {}),
        ("alias bomb in seeds", lambda t: _dump({k: v for k, v in t.items() if k != "seeds"})
         + f"seeds: {alias_bomb()}\n", {}),
        ("10000 nested lists", lambda t: _dump({k: v for k, v in t.items() if k != "seeds"})
         + f"seeds: {nested()}\n", {}),
        ("unknown distribution", lambda t: _set(t, "space", "train.lr", {"gird": [0.1, 0.2]}), {}),
        ("empty grid", lambda t: _set(t, "space", "regularizer.triplane_width", {"grid": []}), {}),
        ("null grid value", lambda t: _set(t, "space", "regularizer.triplane_width",
                                            {"grid": [None, 32]}), {}),
        ("two distributions", lambda t: _set(t, "space", "train.lr",
                                             {"grid": [0.1], "uniform": [0, 1]}), {}),
        ("unknown key varied", lambda t: _set(t, "space", "train.nosuch", {"grid": [1, 2]}), {}),
        ("negative search.seed", lambda t: _set(t, "search", "seed", -1), {}),
        ("search.seed a string", lambda t: _set(t, "search", "seed", "abc"), {}),
        ("unknown algorithm", lambda t: _set(t, "search", "algorithm", "bayes"), {}),
        ("metric with a bad suffix", lambda t: _set(t, "search", "metric", "semseg_mIoU"), {}),
        ("misspelt metric", lambda t: _set(t, "search", "metric", "depth_rsme"), {}),
        ("mode against the metric", lambda t: _set(_set(t, "search", "metric", "depth_rmse"),
                                                   "search", "mode", "max"), {}),
        ("unknown mode", lambda t: _set(t, "search", "mode", "maximise"), {}),
        ("empty seeds", lambda t: {**t, "seeds": []}, {}),
        ("negative seed", lambda t: {**t, "seeds": [-1]}, {}),
        ("seeds a string", lambda t: {**t, "seeds": "abc"}, {}),
        ("zero workers", lambda t: {**t, "resources": {"workers": 0}}, {}),
        ("infinite cpus_per_worker", lambda t: {**t, "resources": {"cpus_per_worker": float("inf")}}, {}),
        ("negative gpus_per_worker", lambda t: {**t, "resources": {"gpus_per_worker": -1}}, {}),
        ("NaN cpus_per_worker", lambda t: {**t, "resources": {"cpus_per_worker": float("nan")}}, {}),
        ("zero max_concurrent_trials", lambda t: {**t, "max_concurrent_trials": 0}, {}),
        ("negative max_concurrent_trials", lambda t: {**t, "max_concurrent_trials": -1}, {}),
        ("baseline on an unknown key", lambda t: {**t, "baseline": {"train.nosuch": 1}}, {}),
        ("when on an unknown key", lambda t: _set(t, "space", "train.lr", {
            "grid": [0.1, 0.01], "when": {"train.nosuch": 1}}), {}),
        ("space name with a slash", lambda t: {**t, "name": "a/b"}, {}),
        ("space name ..", lambda t: {**t, "name": ".."}, {}),
        ("base file missing", lambda t: {**t, "base": "nosuch/config.yaml"}, {}),
        ("base a number", lambda t: {**t, "base": 5}, {}),
        ("profile missing", lambda t: t, {"profile": "nosuch"}),
        ("profile cpu defined as a number", lambda t: {**t, "profiles": {"cpu": 5}}, {"profile": "cpu"}),
        ("profile file missing", lambda t: {**t, "profiles": {"cpu": "profiles/nosuch.yaml"}}, {"profile": "cpu"}),
        ("profile extends a missing file", lambda t: {**t, "profiles": {"cpu": {"extends": "profiles/nosuch.yaml"}}}, {"profile": "cpu"}),
        ("profile an alias bomb", lambda t: _dump({k: v for k, v in t.items() if k != "profiles"})
         + f"profiles: {{cpu: {{model.out_indices: {alias_bomb()}}}}}\n", {"profile": "cpu"}),
        ("profile sets search: 5", lambda t: {**t, "profiles": {"cpu": {"search": 5}}}, {"profile": "cpu"}),
        ("profile a list", lambda t: {**t, "profiles": {"cpu": [1, 2]}}, {"profile": "cpu"}),
        ("profile with an unknown key", lambda t: {**t, "profiles": {"cpu": {"train.nosuch": 1}}}, {"profile": "cpu"}),
    ]
    for label, mutate, kw in structural:
        for name in rng.sample(SPACE_NAMES, 2):
            add(name, label, mutate, **kw)
    # Continuous distributions on float keys.
    continuous = [
        ("uniform low > high", {"uniform": [0.1, 0.01]}),
        ("uniform infinite bound", {"uniform": [0.0, float("inf")]}),
        ("uniform NaN bound", {"uniform": [float("nan"), 0.1]}),
        ("loguniform low 0", {"loguniform": [0.0, 0.1]}),
        ("loguniform negative", {"loguniform": [-1.0, 0.1]}),
        ("loguniform infinite", {"loguniform": [1e-4, float("inf")]}),
        ("uniform one bound", {"uniform": [0.1]}),
        ("uniform strings", {"uniform": ["a", "b"]}),
    ]
    for label, dist in continuous:
        for name in ("explore_regularizer", "alpha_schedules"):
            def mutate(t: dict[str, Any], dist: dict[str, Any] = dist) -> dict[str, Any]:
                t = _set(t, "space", "regularizer.alpha.max", dist)
                t["search"] = {**(t.get("search") or {}), "algorithm": "optuna"}
                t["seeds"] = [0]
                return t
            add(name, label, mutate)
    integer = [
        ("randint bound >= 2**63", {"randint": [0, 2 ** 63]}),
        ("randint low >= high", {"randint": [64, 8]}),
        ("quniform q 0", {"quniform": [8, 64, 0]}),
        ("quniform q negative", {"quniform": [8, 64, -8]}),
        ("uniform on an integer key", {"uniform": [8, 64]}),
    ]
    for label, dist in integer:
        for name in ("explore_regularizer", "samples_per_ray"):
            def mutate(t: dict[str, Any], dist: dict[str, Any] = dist) -> dict[str, Any]:
                t = _set(t, "space", "regularizer.samples_per_ray", dist)
                t["search"] = {**(t.get("search") or {}), "algorithm": "optuna"}
                t["seeds"] = [0]
                return t
            add(name, label, mutate)

    def billion_samples(t: dict[str, Any]) -> dict[str, Any]:
        t = _set(t, "space", "regularizer.alpha.max", {"uniform": [0.5, 8.0]})
        t["search"] = {**(t.get("search") or {}), "algorithm": "random", "num_samples": 10 ** 9}
        return t

    for name in ("demo", "alpha_schedules", "triplane_width"):
        add(name, "random search num_samples 1e9", billion_samples)

    def huge_grid(t: dict[str, Any]) -> dict[str, Any]:
        for i, key in enumerate(("train.seed", "data.fraction_seed", "data.synth.seed",
                                 "train.log_every", "data.max_val_images")):
            t = _set(t, "space", key, {"grid": list(range(1 + (i > 2), 60 + (i > 2)))})
        return t

    for name in ("demo", "render_tasks"):
        add(name, "grid of 60**5 trials", huge_grid)
    return cases


def _spaces_using(profile: str) -> list[str]:
    """Shipped spaces whose profile ``profile`` is exactly the shared file (not a mapping
    that could override what the file says)."""
    out = []
    for name in SPACE_NAMES:
        profiles = _load_space(name).get("profiles") or {}
        if isinstance(profiles, dict) and profiles.get(profile) == f"profiles/{profile}.yaml":
            out.append(name)
    return out


def _profile_cases(rng: random.Random) -> list[Case]:
    """Mutations of the shipped profile files (the space is left as shipped)."""
    cases: list[Case] = []
    users = {p: _spaces_using(p) for p in ("cpu", "paper")}

    def profile_case(profile: str, label: str, edit: Callable[[str], str | bytes],
                     expect: str = "error", mentions: str | None = None, space: str | None = None) -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            spaces = _spaces(d, fx)
            path = spaces / "profiles" / f"{profile}.yaml"
            # The paper profile asks for a GPU per trial: without one that error would hide
            # the mutation, so the profile starts from CPU-only resources.
            new = edit(path.read_text().replace("gpus_per_worker: 1", "gpus_per_worker: 0"))
            if isinstance(new, bytes):
                path.write_bytes(new)
            else:
                path.write_text(new)
            if label == "extends itself":
                (spaces / "profiles" / "loop.yaml").write_text("extends: loop.yaml\n")
            space = rng_space
            return _dry(str(spaces / f"{space}.yaml"), "--profile", profile)

        rng_space = space or rng.choice(users[profile])
        category = "profile" if expect == "error" else "control"
        cases.append(Case(category, f"{profile} ({rng_space}): {label}", build, expect, mentions=mentions))

    profile_case("cpu", "unchanged", lambda text: text, "ok")
    # An optuna space: a dry run checks one model (the paper's HRNet-48), not one per trial.
    profile_case("paper", "unchanged (no GPU)", lambda text: text, "ok", space="explore_regularizer")

    for key, value in rng.sample(BAD_VALUES, 24):
        profile_case("cpu", f"{key}: {value}", lambda text, k=key, v=value: f"{text}\n{k}: {v}\n",
                     mentions=key)
    for label, edit in [
        ("search: 5", lambda text: text + "\nsearch: 5\n"),
        ("resources: []", lambda text: text + "\nresources: []\n"),
        ("scheduler type nosuch", lambda text: text + "\nscheduler: {type: nosuch}\n"),
        ("alias bomb", lambda text: text + f"\nmodel.out_indices: {alias_bomb()}\n"),
        ("10000 nested lists", lambda text: text + f"\ndata.crop_size: {nested()}\n"),
        ("non-UTF-8", lambda text: text.encode() + b"\ntrain.lr: \xff\xfe\n"),
        ("UTF-16", lambda text: text.encode("utf-16")),
        ("a list", lambda text: "- train.lr: 0.1\n"),
        ("broken YAML", lambda text: text + "\ntrain.lr: [0.1\n"),
        ("extends missing file", lambda text: "extends: nosuch.yaml\n" + text),
        ("extends itself", lambda text: "extends: loop.yaml\n" + text),
        ("max_concurrent_trials -3", lambda text: text + "\nmax_concurrent_trials: -3\n"),
        ("workers 0", lambda text: re.sub(r"\bworkers: \d+", "workers: 0", text)),
        ("gpus_per_worker .inf", lambda text: re.sub(r"gpus_per_worker: \d+", "gpus_per_worker: .inf", text)),
    ]:
        profile_case("cpu", label, edit, mentions="cpu.yaml")
        profile_case("paper", label, edit, mentions="paper.yaml")
    return cases


def _config_file(text: str | bytes) -> Callable[[Path, Fixtures], list[str]]:
    def build(d: Path, fx: Fixtures) -> list[str]:
        path = d / "config.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return ["train", str(path)]

    return build


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    """``"a.b.c", v`` -> ``{"a": {"b": {"c": v}}}``."""
    tree: Any = value
    for part in reversed(dotted.split(".")):
        tree = {part: tree}
    return tree


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) \
            and key != "tasks" else value
    return out


def _config_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []
    good = {"tasks": {"semseg": 1.0, "depth": 1.0}, "data": {"layout": "synthrooms"}}
    base = _dump(good)
    for key, value in rng.sample(BAD_VALUES, 24):
        text = _dump(_merge(good, _nest(key, _value(value))))
        cases.append(Case("config", f"file {key}: {value}", _config_file(text), mentions=key))
    cases.append(Case("control", "config file unchanged", _config_file(base), "reached"))
    for label, text in [
        ("non-UTF-8", b"tasks: {semseg: 1.0}\ntrain: {lr: \xff\xfe}\n"),
        ("UTF-16", (base + "train: {lr: 0.1}\n").encode("utf-16")),
        ("binary garbage", bytes(random.Random(2).randrange(256) for _ in range(400))),
        ("alias bomb", base + f"model: {{out_indices: {alias_bomb()}}}\n"),
        ("10000 nested lists", base + f"model: {{out_indices: {nested()}}}\n"),
        ("top level a list", "- tasks\n- data\n"),
        ("top level a string", "hello\n"),
        ("broken YAML", "tasks: {semseg: 1.0\n"),
        ("unknown section", base + "nosuch: {a: 1}\n"),
        ("section a number", base + "train: 5\n"),
        ("tasks a list", "tasks: [semseg, depth]\n"),
        ("a section of the wrong type", base + "regularizer: {alpha: 4}\n"),
    ]:
        cases.append(Case("config", f"file {label}", _config_file(text)))
    cases.append(Case("config", "config file missing", lambda d, fx: ["train", str(d / "nosuch.yaml")]))
    cases.append(Case("config", "config is a folder", lambda d, fx: ["train", str(d)]))
    return cases


def _train_set_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def build_for(extra: list[str]) -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            cfg = d / "config.yaml"
            shutil.copy(fx.config, cfg)
            return ["train", str(cfg), "--storage", str(d / "runs"), *extra]

        return build

    for key, value in BAD_VALUES:
        cases.append(Case("train-set", f"--set {key}={value}", build_for(["--set", f"{key}={value}"]),
                          mentions=key))
    for extra in (["--set", "noequals"], ["--set", "=1"], ["--set", "train..lr=1"],
                  ["--workers", "0"], ["--workers", "-2"], ["--cpus-per-worker", "0"],
                  ["--cpus-per-worker", "inf"], ["--cpus-per-worker", "nan"],
                  ["--gpus-per-worker", "-1"], ["--gpus-per-worker", "nan"],
                  ["--name", "a/b"], ["--name", ".."], ["--name", ""]):
        cases.append(Case("train-set", " ".join(extra), build_for(extra)))

    def storage_file(d: Path, fx: Fixtures) -> list[str]:
        cfg = d / "config.yaml"
        shutil.copy(fx.config, cfg)
        (d / "storage.txt").write_text("not a folder")
        return ["train", str(cfg), "--storage", str(d / "storage.txt")]

    cases.append(Case("train-set", "--storage is a file", storage_file))
    rng.shuffle(cases)
    return cases


def _cli_cases() -> list[Case]:
    cases: list[Case] = []

    def synth(extra: list[str], setup: Callable[[Path], None] | None = None,
              out: str = "out") -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            if setup is not None:
                setup(d)
            return ["data", "synthrooms", "--out", str(d / out), "--scenes", "1", "--views", "1",
                    "--size", "16x16", "--workers", "1", *extra]

        return build

    for extra in (["--size", "100000x100000"], ["--size", "0x10"], ["--size", "abc"],
                  ["--size", "4x4"], ["--size", "16x"], ["--size", "-16x16"], ["--scenes", "0"],
                  ["--scenes", "-3"], ["--views", "0"], ["--seed", "-1"], ["--val-fraction", "1.0"],
                  ["--val-fraction", "nan"], ["--val-fraction", "-0.1"], ["--workers", "0"],
                  ["--scenes", "x"]):
        cases.append(Case("cli-synthrooms", " ".join(extra), synth(extra), mentions=extra[0]))

    def a_file(d: Path) -> None:
        (d / "out").write_text("precious")

    def unrelated(d: Path) -> None:
        (d / "out").mkdir()
        (d / "out" / "thesis.tex").write_text("\\documentclass{article}")

    def dataset_plus(d: Path) -> None:
        from mtlsearch.data.synthrooms import generate

        generate(d / "out", scenes=1, views=1, size=(8, 8), workers=1, progress=False)
        (d / "out" / "notes.txt").write_text("mine")

    def earlier_dataset(d: Path) -> None:
        from mtlsearch.data.synthrooms import generate

        generate(d / "out", scenes=1, views=1, size=(8, 8), workers=1, progress=False)

    def report_folder(d: Path) -> None:
        (d / "out").mkdir()
        (d / "out" / ".mtlsearch-report").write_text(json.dumps(
            {"tool": "mtlsearch", "kind": "report", "files": []}))

    cases += [
        Case("cli-synthrooms", "--out an existing file", synth([], a_file)),
        Case("cli-synthrooms", "--out an existing file --force", synth(["--force"], a_file)),
        Case("cli-synthrooms", "--out inside a file", synth([], a_file, out="out/sub")),
        Case("cli-synthrooms", "--out an unrelated folder", synth([], unrelated)),
        Case("cli-synthrooms", "--out an unrelated folder --force", synth(["--force"], unrelated)),
        Case("cli-synthrooms", "--force over a dataset with a user file", synth(["--force"], dataset_plus)),
        Case("cli-synthrooms", "--force over a report", synth(["--force"], report_folder)),
        Case("cli-synthrooms", "no --out", lambda d, fx: ["data", "synthrooms"]),
        Case("control", "synthrooms", synth([]), "ok"),
        Case("control", "synthrooms --force over its own dataset", synth(["--force"], earlier_dataset),
             "ok", may_replace=("out",)),
    ]

    def search(extra: list[str], space: str = "demo") -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            spaces = _spaces(d, fx)
            return ["search", str(spaces / f"{space}.yaml"), *extra]

        return build

    for extra in (["--dry-run", "--profile", "nosuch"], ["--dry-run", "--name", "../x"],
                  ["--dry-run", "--name", "a/b"], ["--dry-run", "--name", ""],
                  ["--dry-run", "--set", "nosuch.key=1"], ["--dry-run", "--set", "train.lr=-1"],
                  ["--dry-run", "--set", "regularizer.triplane_width=-1"],
                  ["--dry-run", "--set", "noequals"], ["--dry-run", "--profile", "cpu", "--set",
                                                      "model.backbone=notamodel"],
                  ["--resume", "--dry-run"], ["--name", "a/b"], ["--profile", "cpu", "--name", "x/y"]):
        cases.append(Case("cli-search", " ".join(extra), search(extra)))

    def storage_file(d: Path, fx: Fixtures) -> list[str]:
        spaces = _spaces(d, fx)
        (d / "st").write_text("file")
        return ["search", str(spaces / "demo.yaml"), "--profile", "cpu", "--storage", str(d / "st")]

    cases += [
        Case("cli-search", "--storage a file", storage_file),
        Case("cli-search", "--storage a file, --dry-run",
             lambda d, fx: [*storage_file(d, fx), "--dry-run"]),
        Case("cli-search", "space missing", lambda d, fx: _dry(str(d / "nosuch.yaml"))),
        Case("cli-search", "space a folder", lambda d, fx: _dry(str(d))),
    ]

    def report(extra: list[str]) -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            s = _copy_search(d, fx)
            return ["report", str(s), "--out", str(d / "rep"), *extra]

        return build

    for extra in (["--format", "pdf"], ["--format", "md,docx"], ["--group-by", "nope.key"],
                  ["--baseline", "no such row"]):
        cases.append(Case("cli-report", " ".join(extra), report(extra)))
    cases += [
        Case("cli-report", "folder missing", lambda d, fx: ["report", str(d / "nosuch")]),
        Case("cli-report", "folder is a file", lambda d, fx: ["report", str(_put(d / "f", "x"))]),
        Case("cli-report", "empty folder", lambda d, fx: ["report", str(_mkdir(d / "e"))]),
    ]

    def good_image(d: Path) -> Path:
        from PIL import Image

        path = d / "room.png"
        Image.new("RGB", (24, 20), (120, 80, 40)).save(path)
        return path

    def predict(checkpoint: Callable[[Path, Fixtures], Path], image: Callable[[Path], Path],
                out: Callable[[Path], Path] = lambda d: d / "p") -> Callable[[Path, Fixtures], list[str]]:
        return lambda d, fx: ["predict", str(checkpoint(d, fx)), str(image(d)), "--out", str(out(d))]

    def good(d: Path, fx: Fixtures) -> Path:
        return fx.checkpoint

    cases += [
        Case("cli-predict", "checkpoint missing", predict(lambda d, fx: d / "no.pt", good_image)),
        Case("cli-predict", "image missing", predict(good, lambda d: d / "no.png")),
        Case("cli-predict", "image is text", predict(good, lambda d: _put(d / "x.png", "text"))),
        Case("cli-predict", "decompression bomb image", predict(good, lambda d: _put(d / "b.png", BOMB_PNG))),
        Case("cli-predict", "90-megapixel image", predict(good, lambda d: _put(d / "b.png", LARGE_PNG))),
        Case("cli-predict", "--out an existing file",
             predict(good, good_image, lambda d: _put(d / "p", "keep"))),
        Case("cli-predict", "--out an unrelated folder",
             predict(good, good_image, lambda d: _put(d / "p" / "a.txt", "x").parent)),
        Case("cli-predict", "--out the image's folder", predict(good, good_image, lambda d: d)),
    ]
    return cases


# -- folders ------------------------------------------------------------------


def _optuna_meta(search: Path, storage: str | None = None) -> None:
    meta = json.loads((search / "mtlsearch.json").read_text())
    meta["search"] = {"algorithm": "optuna", "optuna_storage": storage}
    (search / "mtlsearch.json").write_text(json.dumps(meta))


def _sqlite(path: Path) -> None:
    import sqlite3

    con = sqlite3.connect(path)
    con.execute("create table notes (text)")
    con.execute("insert into notes values ('mine')")
    con.commit()
    con.close()


def _search_folder_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def report_with(edit: Callable[[Path], None], expect: str = "error") -> Case:
        def build(d: Path, fx: Fixtures) -> list[str]:
            s = _copy_search(d, fx)
            edit(s)
            return ["report", str(s), "--out", str(d / "rep"), "--format", "md"]

        return Case("folder-search", "", build, expect,
                    mentions="mtlsearch.json" if expect == "error" else None)

    def meta_bytes(content: bytes) -> Callable[[Path], None]:
        return lambda s: (s / "mtlsearch.json").write_bytes(content)

    def meta_field(key: str, value: Any) -> Callable[[Path], None]:
        def edit(s: Path) -> None:
            meta = json.loads((s / "mtlsearch.json").read_text())
            meta[key] = value
            (s / "mtlsearch.json").write_text(json.dumps(meta))

        return edit

    items: list[tuple[str, Case]] = [
        ("mtlsearch.json garbage", report_with(meta_bytes(b"{not json"))),
        ("mtlsearch.json empty", report_with(meta_bytes(b""))),
        ("mtlsearch.json non-UTF-8", report_with(meta_bytes(b'{"name": "\xff\xfe"}'))),
        ("mtlsearch.json UTF-16", report_with(meta_bytes(json.dumps({"name": "x"}).encode("utf-16")))),
        ("mtlsearch.json a list", report_with(meta_bytes(b"[1, 2, 3]"))),
        ("mtlsearch.json 100000 nested lists", report_with(meta_bytes(b"[" * 100000 + b"]" * 100000))),
        ("mtlsearch.json truncated", report_with(lambda s: (s / "mtlsearch.json").write_bytes(
            (s / "mtlsearch.json").read_bytes()[:40]))),
    ]
    for key, value in [("name", "../../escape"), ("name", 5), ("name", "a/b"), ("name", ""),
                       ("ablated_keys", 5), ("ablated_keys", [1, 2]), ("ablated_keys", "train.seed"),
                       ("search", "grid"), ("search", [1]), ("search", {"algorithm": 5}),
                       ("tasks", ["semseg"]), ("tasks", "semseg"), ("space", 3), ("overrides", 7),
                       ("overrides", [1, 2]), ("paper", 5), ("paper", ["x"]), ("profile", {"a": 1}),
                       ("baseline", 5), ("baseline", [1]), ("static_config", "x"),
                       ("single_task_baselines", [1]), ("space_path", 5)]:
        items.append((f"mtlsearch.json {key}: {json.dumps(value)}", report_with(meta_field(key, value))))

    def trial_edit(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        return lambda s: fn(sorted(p for p in s.iterdir() if p.is_dir())[0])

    tolerated = [
        ("result.json garbage", trial_edit(lambda t: (t / "result.json").write_bytes(b"\xff\x00garbage"))),
        ("result.json truncated line", trial_edit(lambda t: (t / "result.json").write_bytes(
            (t / "result.json").read_bytes()[:-30]))),
        ("result.json deeply nested line", trial_edit(lambda t: (t / "result.json").write_text(
            "[" * 100000 + "]" * 100000 + "\n"))),
        ("result.json missing", trial_edit(lambda t: (t / "result.json").unlink())),
        ("params.json missing", trial_edit(lambda t: (t / "params.json").unlink())),
        ("params.json a list", trial_edit(lambda t: (t / "params.json").write_text("[1]"))),
        ("params.json seed infinite", trial_edit(lambda t: (t / "params.json").write_text(
            '{"train.seed": Infinity, "regularizer.tasks": "all"}'))),
        ("progress.csv binary", trial_edit(lambda t: ((t / "result.json").unlink(),
                                                      (t / "progress.csv").write_bytes(b"\xff\xfe\x00\x01" * 50)))),
        ("error.txt binary", trial_edit(lambda t: (t / "error.txt").write_bytes(b"\xff\xfe\x00" * 30))),
        ("experiment_state garbage", lambda s: (s / "experiment_state-2026.json").write_bytes(b"\x00\xff")),
        ("experiment_state odd types", lambda s: (s / "experiment_state-2026.json").write_text(json.dumps(
            {"trial_data": [[json.dumps({"trial_id": "a0000_00000", "relative_logdir": [1],
                                         "config": 5}), "x"], [1, 2, 3], "y"]}))),
        ("corrupt checkpoint of a trial", lambda s: ((s / "_train" / "a0000_00000" / "checkpoint_000000").mkdir(
            parents=True), (s / "_train" / "a0000_00000" / "checkpoint_000000" / "checkpoint.pt").write_bytes(
            b"garbage"))),
        ("a trial folder that is a file", lambda s: (s / "b0000_00009").write_text("x")),
        ("optuna.db garbage", lambda s: (_optuna_meta(s), (s / "optuna.db").write_bytes(b"garbage" * 200))),
        ("optuna.db an unrelated SQLite database", lambda s: (_optuna_meta(s), _sqlite(s / "optuna.db"))),
        ("optuna_storage naming an unrelated SQLite database",
         lambda s: (_optuna_meta(s, str(s.parent.parent / "mine.db")), _sqlite(s.parent.parent / "mine.db"))),
    ]
    for label, edit in tolerated:
        items.append((label, report_with(edit, expect="any")))

    def out_case(label: str, setup: Callable[[Path, Path, Fixtures], Path]) -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            s = _copy_search(d, fx)
            out = setup(d, s, fx)
            return ["report", str(s), "--out", str(out), "--format", "md"]

        items.append((f"--out {label}", Case("folder-out", "", build, mentions="--out")))

    def mk(path: Path, files: dict[str, str]) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        return path

    out_case("an unrelated folder (thesis.tex)", lambda d, s, fx: mk(d / "thesis", {"thesis.tex": "x"}))
    out_case("a folder with a hidden file", lambda d, s, fx: mk(d / "h", {".keep": ""}))
    out_case("an existing file", lambda d, s, fx: _put(d / "f.txt", "keep"))
    out_case("inside an existing file", lambda d, s, fx: _put(d / "f.txt", "keep") / "r")
    out_case("the search folder", lambda d, s, fx: s)
    out_case("the trials folder (its parent)", lambda d, s, fx: s.parent)
    out_case("the case folder (its grandparent)", lambda d, s, fx: d)
    out_case("a trial folder inside it", lambda d, s, fx: sorted(p for p in s.iterdir() if p.is_dir())[0])
    out_case("a new folder inside it", lambda d, s, fx: s / "report")
    out_case("the search folder via ..", lambda d, s, fx: s / "a0000_00000" / "..")
    out_case("a SynthRooms dataset", lambda d, s, fx: _copy_dataset(d, fx))
    out_case("an earlier report plus a user file", lambda d, s, fx: mk(d / "r", {
        ".mtlsearch-report": json.dumps({"tool": "mtlsearch", "kind": "report", "files": ["table.md"]}),
        "table.md": "old", "notes.txt": "mine"}))
    out_case("an unmarked report plus a user file", lambda d, s, fx: mk(d / "r", {
        "results.parquet": "old", "table.md": "old", "notes.txt": "mine"}))
    out_case("a report marker of another kind", lambda d, s, fx: mk(d / "r", {
        ".mtlsearch-synthrooms": json.dumps({"tool": "mtlsearch", "kind": "synthrooms", "files": []}),
        "x.txt": "mine"}))
    out_case("a corrupt report marker", lambda d, s, fx: mk(d / "r", {".mtlsearch-report": "\xff garbage",
                                                                   "table.md": "mine"}))
    out_case("a marker whose file list is not a list", lambda d, s, fx: mk(d / "r", {
        ".mtlsearch-report": json.dumps({"tool": "mtlsearch", "kind": "report", "files": "table.md"}),
        "table.md": "mine"}))
    def link(d: Path, s: Path, fx: Fixtures) -> Path:
        mk(d / "real", {"a.txt": "x"})
        (d / "ln").symlink_to(d / "real")
        return d / "ln"

    out_case("a symbolic link to a folder", link)
    out_case("the home of the user's data (cwd)", lambda d, s, fx: Path("."))

    def resume(edit: Callable[[Path], None]) -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            spaces = _spaces(d, fx)
            folder = d / "trials" / "demo"
            folder.mkdir(parents=True)
            from mtlsearch.space import load_space

            space = load_space(spaces / "demo.yaml", "cpu", [])
            (folder / "mtlsearch.json").write_text(json.dumps(
                {"name": "demo", "space": space.to_json(), "profile": "cpu", "overrides": []}))
            edit(folder / "mtlsearch.json")
            return ["search", str(spaces / "demo.yaml"), "--resume", "--storage", str(d / "trials")]

        return build

    def field(key: str, value: Any) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            meta = json.loads(path.read_text())
            meta[key] = value
            path.write_text(json.dumps(meta))

        return edit

    cases.append(Case("control", "--resume of a good search", resume(lambda p: None), "reached"))
    for label, edit in [
        ("garbage", lambda p: p.write_bytes(b"{garbage")),
        ("empty", lambda p: p.write_bytes(b"")),
        ("non-UTF-8", lambda p: p.write_bytes(b"\xff\xfe\x00")),
        ("a list", lambda p: p.write_text("[]")),
        ("nested 100000", lambda p: p.write_text("[" * 100000 + "]" * 100000)),
        ("overrides a string", field("overrides", "train.lr=0.1")),
        ("overrides a number", field("overrides", 5)),
        ("overrides a mapping", field("overrides", {"train.lr": 0.1})),
        ("overrides of numbers", field("overrides", [1, 2])),
        ("profile a number", field("profile", 5)),
        ("profile a list", field("profile", ["cpu"])),
        ("missing", lambda p: p.unlink()),
    ]:
        items.append((f"--resume, mtlsearch.json {label}", Case("folder-resume", "", resume(edit),
                                                               mentions="mtlsearch.json")))

    def baselines(content: bytes) -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            from mtlsearch.execution.baselines import baseline_groups
            from mtlsearch.space import load_space

            spaces = _spaces(d, fx)
            path = spaces / "depth_planes.yaml"  # one trial: dry runs check each trial's model
            tree = _load_space("depth_planes")
            tree["space"] = {"cvm.depth_planes": {"grid": [32]}}
            tree["baseline"] = {"cvm.depth_planes": 32}
            path.write_text(_dump(tree))
            space = load_space(path, "cpu", [])
            (key,) = baseline_groups(space, space.expand())
            folder = d / "trials" / "_baselines" / key
            folder.mkdir(parents=True)
            (folder / "baselines.json").write_bytes(content)
            return _dry(str(path), "--profile", "cpu")

        return build

    cases.append(Case("control", "good baselines.json", baselines(json.dumps({"tasks": {
        "semseg": {"metrics": {"semseg_miou": 40.0}}}}).encode()), "ok"))
    for label, content in [
        ("garbage", b"{garbage"), ("empty", b""), ("non-UTF-8", b"\xff\xfe{}"), ("a list", b"[1]"),
        ("tasks a list", b'{"tasks": [1]}'), ("task without metrics", b'{"tasks": {"semseg": {}}}'),
        ("metric a string", b'{"tasks": {"semseg": {"metrics": {"semseg_miou": "high"}}}}'),
        ("unknown task", b'{"tasks": {"nosuch": {"metrics": {}}}}'),
        ("nested 100000", b"[" * 100000 + b"]" * 100000),
    ]:
        items.append((f"baselines.json {label}", Case("folder-baselines", "", baselines(content),
                                                      mentions="baselines.json")))
    for label, case in items:
        case.name = label
        cases.append(case)
    return cases  # controls appended above keep their own names


DATASET_FILES = {
    "image": "images/", "segmentation": "segmentation/", "normals": "normals/", "edge": "edge/",
    "saliency": "saliency/", "depth": "depth/", "split": "train.txt", "camera": "cameras/",
    "meta.json": "meta.json",
}
"""Label prefix of a dataset case -> what its error or problem line must name."""


def _dataset_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []

    def ds_case(label: str, edit: Callable[[Path, str], None], command: str) -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            ds = _copy_dataset(d, fx)
            edit(ds, _first_id(ds))
            if command == "check":
                return ["data", "check", str(ds)]
            return ["data", "preview", str(ds), "--out", str(d / "preview.png"), "--num", "1"]

        token = next(t for prefix, t in DATASET_FILES.items() if label.startswith(prefix))
        cases.append(Case("folder-dataset", f"{command}: {label}", build, mentions=token))

    def write(rel: str, content: bytes) -> Callable[[Path, str], None]:
        def edit(ds: Path, id_: str) -> None:
            path = ds / rel.format(id=id_)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

        return edit

    def npy(rel: str, array: Any) -> Callable[[Path, str], None]:
        import numpy as np

        def edit(ds: Path, id_: str) -> None:
            np.save(ds / rel.format(id=id_), array, allow_pickle=True)

        return edit

    def truncate(rel: str, keep: int) -> Callable[[Path, str], None]:
        def edit(ds: Path, id_: str) -> None:
            path = ds / rel.format(id=id_)
            path.write_bytes(path.read_bytes()[:keep])

        return edit

    import numpy as np

    edits: list[tuple[str, Callable[[Path, str], None]]] = [
        ("image garbage", write("images/{id}.png", b"\x00garbage" * 10)),
        ("image empty", write("images/{id}.png", b"")),
        ("image truncated", truncate("images/{id}.png", 60)),
        ("image decompression bomb", write("images/{id}.png", BOMB_PNG)),
        ("image 90 megapixels", write("images/{id}.png", LARGE_PNG)),
        ("segmentation bomb", write("segmentation/{id}.png", BOMB_PNG)),
        ("segmentation truncated", truncate("segmentation/{id}.png", 50)),
        ("normals garbage", write("normals/{id}.png", b"PNG?" * 20)),
        ("edge empty", write("edge/{id}.png", b"")),
        ("saliency bomb", write("saliency/{id}.png", BOMB_PNG)),
        ("depth .npy of strings", npy("depth/{id}.npy", np.array(["a", "bb"]))),
        ("depth .npy of objects", npy("depth/{id}.npy", np.array([{"a": 1}], dtype=object))),
        ("depth .npy complex", npy("depth/{id}.npy", np.zeros((16, 16), np.complex64))),
        ("depth .npy 3-D", npy("depth/{id}.npy", np.zeros((2, 16, 16), np.float32))),
        ("depth .npy wrong size", npy("depth/{id}.npy", np.zeros((5, 7), np.float32))),
        ("depth .npy structured", npy("depth/{id}.npy", np.zeros(4, dtype=[("a", "f4"), ("b", "i4")]))),
        ("depth .npy truncated", truncate("depth/{id}.npy", 100)),
        ("depth .npy header only", truncate("depth/{id}.npy", 128)),
        ("depth .npy garbage", write("depth/{id}.npy", b"\x93NUMPY\x01\x00garbage")),
        ("depth .npy empty", write("depth/{id}.npy", b"")),
        ("split non-UTF-8", write("gt_sets/train.txt", b"\xff\xfe\x00s\x00")),
        ("split UTF-16", lambda ds, id_: (ds / "gt_sets" / "train.txt").write_bytes(
            (ds / "gt_sets" / "train.txt").read_text().encode("utf-16"))),
        ("split lists ../../etc/passwd", write("gt_sets/train.txt", b"../../etc/passwd\n")),
        ("split lists an id with a NUL", write("gt_sets/train.txt", b"s0000\x00_f00\n")),
        ("split binary", write("gt_sets/train.txt", bytes(range(256)))),
        ("split is a folder", lambda ds, id_: ((ds / "gt_sets" / "train.txt").unlink(),
                                              (ds / "gt_sets" / "train.txt").mkdir())),
        ("camera garbage", write("cameras/{id}.json", b"\xff{garbage")),
        ("camera a list", write("cameras/{id}.json", b"[1, 2]")),
        ("camera frame infinite", write("cameras/{id}.json", json.dumps(
            {"K": np.eye(3).tolist(), "cam2world": np.eye(4).tolist(), "frame": 1e999}).encode())),
        ("camera K 2x2", write("cameras/{id}.json", json.dumps(
            {"K": [[1, 0], [0, 1]], "cam2world": np.eye(4).tolist()}).encode())),
        ("meta.json garbage", write("meta.json", b"\xff\xfe garbage")),
    ]
    for label, edit in edits:
        ds_case(label, edit, "check")
    def train_case(label: str, edit: Callable[[Path, str], None], expect: str = "error") -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            ds = _copy_dataset(d, fx)
            edit(ds, _first_id(ds))
            return ["train", str(fx.config), "--storage", str(d / "runs"),
                    "--set", f"data.root={ds}"]

        category = "folder-dataset" if expect == "error" else "control"
        cases.append(Case(category, f"train: {label}", build, expect))

    def search_case(label: str, edit: Callable[[Path, str], None], expect: str = "error") -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            ds = _copy_dataset(d, fx)
            edit(ds, _first_id(ds))
            return ["search", str(_spaces(d, fx) / "demo.yaml"), "--profile", "cpu", "--storage",
                    str(d / "trials"), "--set", f"data.root={ds}"]

        category = "folder-dataset" if expect == "error" else "control"
        cases.append(Case(category, f"search: {label}", build, expect))

    search_case("a good dataset", lambda ds, id_: None, "reached")
    search_case("split non-UTF-8", write("gt_sets/train.txt", b"\xff\xfe\x00s\x00"))
    search_case("image decompression bomb", write("images/{id}.png", BOMB_PNG))
    search_case("no segmentation folder", lambda ds, id_: shutil.rmtree(ds / "segmentation"))
    train_case("a good dataset", lambda ds, id_: None, "reached")
    train_case("no depth folder", lambda ds, id_: shutil.rmtree(ds / "depth"))
    train_case("no images folder", lambda ds, id_: shutil.rmtree(ds / "images"))
    for label, edit in edits:
        if label.startswith(("image", "segmentation", "depth .npy", "split", "meta.json", "camera")):
            train_case(label, edit)  # files of the first view, for the config's semseg and depth
    drawn = ("image", "segmentation", "normals", "edge", "saliency", "depth .npy", "split")
    previewable = [(label, edit) for label, edit in edits
                   if label.startswith(drawn) and label != "depth .npy wrong size"]
    for label, edit in rng.sample(previewable, 16):
        ds_case(label, edit, "preview")

    def pascal(label: str, edit: Callable[[Path], None], expect: str = "error") -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            root = d / "pascal"
            for sub in ("JPEGImages", "ImageSets/Context", "semseg/VOC12"):
                (root / sub).mkdir(parents=True)
            from PIL import Image

            Image.new("RGB", (16, 16)).save(root / "JPEGImages" / "2008_000001.jpg")
            Image.new("L", (16, 16)).save(root / "semseg" / "VOC12" / "2008_000001.png")
            for split in ("train", "val"):
                (root / "ImageSets" / "Context" / f"{split}.txt").write_text("2008_000001\n")
            edit(root)
            return ["data", "check", str(root), "--layout", "pascal"]

        category = "folder-dataset" if expect == "error" else "control"
        cases.append(Case(category, f"pascal check: {label}", build, expect))

    def garbage_parts(root: Path) -> None:
        (root / "human_parts").mkdir()
        (root / "human_parts" / "2008_000001.mat").write_bytes(b"garbage mat")

    pascal("a good PASCAL_MT folder", lambda r: None, "ok")
    pascal("human_parts .mat garbage", garbage_parts)
    pascal("split non-UTF-8", lambda r: (r / "ImageSets" / "Context" / "train.txt").write_bytes(b"\xff\xfe\x00"))
    pascal("JPEG bomb", lambda r: (r / "JPEGImages" / "2008_000001.jpg").write_bytes(BOMB_PNG))
    pascal("split ../x", lambda r: (r / "ImageSets" / "Context" / "val.txt").write_text("../x\n"))

    def context_mat(value: Any) -> Callable[[Path], None]:
        def edit(root: Path) -> None:
            import scipy.io

            folder = root / "pascal-context" / "trainval"
            folder.mkdir(parents=True)
            scipy.io.savemat(folder / "2008_000001.mat", {"LabelMap": value})

        return edit

    pascal("LabelMap of strings", context_mat(np.array(["ab", "cd"])))
    pascal("LabelMap 3-D", context_mat(np.zeros((2, 16, 16))))
    pascal("LabelMap of another size", context_mat(np.zeros((5, 7))))
    pascal("a good LabelMap", context_mat(np.zeros((16, 16))), "ok")
    return cases


def _checkpoint_cases() -> list[Case]:
    cases: list[Case] = []

    def ck(label: str, make: Callable[[Path, Fixtures], Path]) -> None:
        def build(d: Path, fx: Fixtures) -> list[str]:
            from PIL import Image

            path = make(d, fx)
            image = d / "room.png"
            Image.new("RGB", (24, 20), (100, 90, 80)).save(image)
            return ["predict", str(path), str(image), "--out", str(d / "pred")]

        cases.append(Case("folder-checkpoint", label, build,
                          mentions="ckdir" if label.startswith("a folder") else "c.pt"))

    def raw(content: bytes) -> Callable[[Path, Fixtures], Path]:
        def make(d: Path, fx: Fixtures) -> Path:
            (d / "c.pt").write_bytes(content)
            return d / "c.pt"

        return make

    def state(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path, Fixtures], Path]:
        def make(d: Path, fx: Fixtures) -> Path:
            import torch

            data = torch.load(fx.checkpoint, weights_only=True)
            torch.save(edit(data), d / "c.pt")
            return d / "c.pt"

        return make

    def truncated(fraction: float) -> Callable[[Path, Fixtures], Path]:
        def make(d: Path, fx: Fixtures) -> Path:
            data = fx.checkpoint.read_bytes()
            (d / "c.pt").write_bytes(data[: int(len(data) * fraction)])
            return d / "c.pt"

        return make

    def model_edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], Any]:
        def edit(data: dict[str, Any]) -> Any:
            fn(data["model"])
            return data

        return edit

    def config_edit(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
        def edit(data: dict[str, Any]) -> Any:
            section, _, name = key.partition(".")
            if name:
                data["config"].setdefault(section, {})[name] = value
            else:
                data["config"][key] = value
            return data

        return edit

    import torch

    ck("garbage bytes", raw(b"\x00\x01garbage" * 100))
    ck("empty file", raw(b""))
    ck("a text file", raw(b"hello, this is not a checkpoint\n"))
    ck("truncated to a half", truncated(0.5))
    ck("truncated to 100 bytes", truncated(0.0001))
    ck("a list", state(lambda d: [1, 2, 3]))
    ck("a tensor", state(lambda d: torch.zeros(3)))
    ck("no model entry", state(lambda d: {k: v for k, v in d.items() if k != "model"}))
    ck("no config entry", state(lambda d: {k: v for k, v in d.items() if k != "config"}))
    ck("model a string", state(lambda d: {**d, "model": "weights"}))
    ck("config a string", state(lambda d: {**d, "config": "resnet"}))
    ck("num_classes a list", state(lambda d: {**d, "num_classes": [1]}))
    ck("num_classes negative", state(lambda d: {**d, "num_classes": {"semseg": -3}}))
    ck("a weight missing", state(model_edit(lambda m: m.pop(next(iter(m))))))
    ck("an extra weight", state(model_edit(lambda m: m.__setitem__("extra.weight", torch.zeros(2)))))
    ck("a weight of the wrong shape", state(model_edit(
        lambda m: m.__setitem__(next(iter(m)), torch.zeros(1, 2, 3)))))
    ck("weights of another backbone", state(config_edit("model.backbone", "resnet10t")))
    ck("config with an unknown key", state(config_edit("train.nosuch", 1)))
    ck("config with lr negative", state(config_edit("train.lr", -1.0)))
    ck("config with tasks a list", state(config_edit("tasks", ["semseg"])))
    ck("config with an unknown backbone", state(config_edit("model.backbone", "notamodel")))
    ck("a pickled Python object", state(lambda d: {**d, "extra": __import__("argparse").Namespace(a=1)}))

    def folder_without(d: Path, fx: Fixtures) -> Path:
        (d / "ckdir").mkdir()
        return d / "ckdir"

    ck("a folder without checkpoint.pt", folder_without)
    return cases


def _image(d: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (24, 20), (100, 90, 80)).save(d / "room.png")
    return d / "room.png"


COLMAP_CAMERAS = "1 PINHOLE 64 48 50.0 50.0 32.0 24.0\n"
COLMAP_IMAGES = ("1 1 0 0 0 0.5 0 1 1 a.png\n\n"
                 "2 0.9238795 0 0.3826834 0 0 0 2 1 b.png\n\n")


def _colmap_cases() -> list[Case]:
    """``data import-colmap`` and ``data preview`` arguments and inputs."""
    cases: list[Case] = []

    def colmap(cameras: str | bytes = COLMAP_CAMERAS, images: str | bytes = COLMAP_IMAGES,
               extra: tuple[str, ...] = (), setup: Callable[[Path], None] | None = None,
               out: str = "ds/cameras") -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            model = d / "sparse"
            model.mkdir()
            for name, content in (("cameras.txt", cameras), ("images.txt", images)):
                if isinstance(content, bytes):
                    (model / name).write_bytes(content)
                else:
                    (model / name).write_text(content)
            if setup is not None:
                setup(d)
            return ["data", "import-colmap", str(model), "--out", str(d / out), *extra]

        return build

    def unrelated(d: Path) -> None:
        (d / "ds" / "cameras").mkdir(parents=True)
        (d / "ds" / "cameras" / "a.json").write_text('{"mine": true}')

    def a_file(d: Path) -> None:
        (d / "ds").mkdir()
        (d / "ds" / "cameras").write_text("mine")

    cases.append(Case("control", "import-colmap", colmap(), "ok"))
    for label, build in [
        ("cameras.txt non-UTF-8", colmap(cameras=b"1 PINHOLE \xff\xfe 48\n")),
        ("cameras.txt binary", colmap(cameras=bytes(range(256)))),
        ("camera with letters for numbers", colmap(cameras="1 PINHOLE 64 48 fx fy cx cy\n")),
        ("camera with too few parameters", colmap(cameras="1 PINHOLE 64 48 50.0\n")),
        ("camera with a NaN focal length", colmap(cameras="1 PINHOLE 64 48 nan 50 32 24\n")),
        ("camera with a negative focal length", colmap(cameras="1 PINHOLE 64 48 -50 -50 32 24\n")),
        ("unknown camera model", colmap(cameras="1 FISHEYE_WEIRD 64 48 50 50 32 24\n")),
        ("image of an unknown camera", colmap(images="1 1 0 0 0 0 0 0 7 a.png\n\n")),
        ("zero quaternion", colmap(images="1 0 0 0 0 0 0 0 1 a.png\n\n")),
        ("infinite translation", colmap(images="1 1 0 0 0 inf 0 0 1 a.png\n\n")),
        ("images.txt non-UTF-8", colmap(images=b"1 1 0 0 0 0 0 0 1 \xff.png\n\n")),
        ("image line too short", colmap(images="1 1 0 0\n\n")),
        ("--scale 0", colmap(extra=("--scale", "0"))),
        ("--scale -1", colmap(extra=("--scale", "-1"))),
        ("--scale nan", colmap(extra=("--scale", "nan"))),
        ("--scale inf", colmap(extra=("--scale", "inf"))),
        ("--out an unrelated folder", colmap(setup=unrelated)),
        ("--out an existing file", colmap(setup=a_file)),
        ("--out inside a file", colmap(setup=a_file, out="ds/cameras/sub")),
        ("model folder missing", lambda d, fx: ["data", "import-colmap", str(d / "nosuch"), "--out",
                                                str(d / "c")]),
    ]:
        token = ("--scale" if label.startswith("--scale") else "--out" if label.startswith("--out")
                 else "images.txt" if label.startswith(("image", "zero", "infinite"))
                 else "nosuch" if label.startswith("model") else "cameras.txt")
        cases.append(Case("cli-colmap", label, build, mentions=token))

    def preview(extra: tuple[str, ...] = (), setup: Callable[[Path, Path], Path] | None = None
                ) -> Callable[[Path, Fixtures], list[str]]:
        def build(d: Path, fx: Fixtures) -> list[str]:
            ds = _copy_dataset(d, fx)
            out = setup(d, ds) if setup is not None else d / "p.png"
            return ["data", "preview", str(ds), "--out", str(out), *extra]

        return build

    def earlier_preview(d: Path, ds: Path) -> Path:
        from mtlsearch.data.preview import draw_preview

        return draw_preview(ds, d / "p.png", num=1)

    def foreign_png(d: Path, ds: Path) -> Path:
        from PIL import Image

        Image.new("RGB", (8, 8)).save(d / "holiday.png")
        return d / "holiday.png"

    cases.append(Case("control", "preview", preview(), "ok"))
    cases.append(Case("control", "preview over its own earlier preview", preview(setup=earlier_preview),
                      "ok", may_replace=("p.png",)))
    for label, build in [
        ("--out an unrelated PNG", preview(setup=foreign_png)),
        ("--out an unrelated text file", preview(setup=lambda d, ds: _put(d / "t.tex", "x"))),
        ("--out a folder", preview(setup=lambda d, ds: d)),
        ("--out in a missing folder", preview(setup=lambda d, ds: d / "nosuch" / "p.png")),
        ("--num 0", preview(("--num", "0"))),
        ("--num -2", preview(("--num", "-2"))),
        ("--split nosuch", preview(("--split", "nosuch"))),
        ("--split ../../x", preview(("--split", "../../x"))),
        ("dataset missing", lambda d, fx: ["data", "preview", str(d / "nosuch"), "--out", str(d / "p.png")]),
    ]:
        cases.append(Case("cli-preview", label, build))
    return cases


def _controls() -> list[Case]:
    """Good inputs: the harness must see them succeed."""

    def report(d: Path, fx: Fixtures) -> list[str]:
        return ["report", str(_copy_search(d, fx)), "--out", str(d / "rep"), "--format", "md"]

    def rereport(d: Path, fx: Fixtures) -> list[str]:
        from mtlsearch.report import build_report

        s = _copy_search(d, fx)
        build_report(s, out=d / "rep", formats=["md"], samples=False)
        return ["report", str(s), "--out", str(d / "rep"), "--format", "md"]

    return [
        Case("control", "demo --dry-run", lambda d, fx: _dry(str(_spaces(d, fx) / "demo.yaml"),
                                                             "--profile", "cpu"), "ok"),
        Case("control", "data check", lambda d, fx: ["data", "check", str(_copy_dataset(d, fx))], "ok"),
        Case("control", "report", report, "ok"),
        Case("control", "report over its own earlier report", rereport, "ok", may_replace=("rep",)),
        Case("control", "predict", lambda d, fx: [
            "predict", str(fx.checkpoint), str(_image(d)), "--out", str(d / "pred")], "ok"),
        Case("control", "train reaches data generation",
             lambda d, fx: ["train", str(fx.config), "--storage", str(d / "runs")], "reached"),
    ]


def generate_cases(seed: int = 0) -> list[Case]:
    """The seeded list of cases (same seed, same cases)."""
    rng = random.Random(seed)
    cases = (_space_cases(rng) + _profile_cases(rng) + _config_cases(rng) + _train_set_cases(rng)
             + _cli_cases() + _colmap_cases() + _search_folder_cases(rng) + _dataset_cases(rng)
             + _checkpoint_cases() + _controls())
    return cases


# ---------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


def run_case(case: Case, folder: Path, fx: Fixtures, limit: float = TIME_LIMIT_S) -> Outcome:
    """Build ``case`` in ``folder``, run it through ``mtlsearch.cli.main`` with ``folder``
    as the cwd and a SIGALRM time limit, and classify what happened."""
    from mtlsearch.cli import main

    folder.mkdir(parents=True)
    cwd = os.getcwd()
    os.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    try:
        argv = case.build(folder, fx)
        before = snapshot(folder)
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main(argv)
            outcome = Outcome("traceback", detail="main() returned instead of exiting")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            text = err.getvalue()
            if code == 0:
                outcome = Outcome("exit0", code)
            elif "Traceback (most recent call last)" in text:
                outcome = Outcome("traceback", code, detail=text[-600:])
            elif any("error:" in line for line in text.splitlines()) or (
                    code == 1 and "problem(s):" in out.getvalue()):
                outcome = Outcome("clean", code)
            else:
                outcome = Outcome("unclean", code, detail=(text or out.getvalue())[-300:])
        except CaseTimeout:
            outcome = Outcome("hang", detail=f"over {limit:g} s")
        except Reached as exc:
            outcome = Outcome("reached", detail=str(exc))
        except BaseException as exc:  # noqa: BLE001 - every other exception is a traceback
            outcome = Outcome("traceback", detail="".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])[-800:])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        outcome.stderr = err.getvalue()[-400:]
        outcome.stdout = out.getvalue()[-2000:]
        after = snapshot(folder)
        outcome.changed = sorted(
            p for p, h in before.items() if after.get(p) != h
            and not any(p == r or p.startswith(f"{r}/") for r in case.may_replace))
        return outcome
    finally:
        os.chdir(cwd)


def verdict(case: Case, outcome: Outcome) -> str | None:
    """Why ``outcome`` breaks the contract for ``case`` (None when it keeps it)."""
    if outcome.changed:
        return f"changed or removed {outcome.changed[:3]}"
    if case.expect == "ok":
        return None if outcome.kind == "exit0" else f"control failed: {outcome.kind} {outcome.detail or outcome.stderr}"
    if case.expect == "reached":
        return None if outcome.kind == "reached" else f"control failed: {outcome.kind} {outcome.stderr}"
    if outcome.kind in ("traceback", "hang", "unclean"):
        return f"{outcome.kind}: {outcome.detail}"
    if outcome.kind in ("exit0", "reached") and case.expect == "error":
        return f"accepted ({outcome.kind} {outcome.detail})"
    if (outcome.kind == "clean" and case.mentions is not None
            and case.mentions not in outcome.stderr + outcome.stdout):
        return f"unclear message (does not name {case.mentions!r}): {outcome.stderr.strip()}"
    return None


__all__ = ["GUARDS", "Case", "Fixtures", "Outcome", "Reached", "build_fixtures",
           "generate_cases", "run_case", "snapshot", "verdict"]
