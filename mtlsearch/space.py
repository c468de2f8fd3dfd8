"""YAML search spaces: one documented schema, parsed and validated before Ray starts.

A search space names the config keys that vary, how they vary (grid values or Tune
distributions, optionally conditional on other keys), the seeds every sampled
config is repeated with, the search algorithm and its metric(s), resources and named
profiles (``cpu``, ``paper``). The schema is documented in ``search_spaces/README.md``.

Every mistake raises :class:`UserError` naming the file, the line and the key, e.g.
``search_spaces/x.yaml line 12: space.regularizer.alpha.mx: unknown config key``.

Entry points: :func:`load_space` (parse + validate), :meth:`Space.expand` (the trials
of a grid or random search), :meth:`Space.trial_config` (one trial's typed config).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mtlsearch.config import (
    Config,
    config_fields,
    load_config,
    parse_override,
    read_yaml,
    set_dotted,
)
from mtlsearch.errors import UserError
from mtlsearch.tasks import TASKS

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
"""Ways a key can vary: ``grid``/``choice`` list values; the others take bounds."""
ALGORITHMS = ("grid", "random", "optuna")
TOP_KEYS = (
    "name", "description", "paper", "base", "fixed", "space", "seeds", "baseline",
    "baselines", "search", "scheduler", "resources", "max_concurrent_trials", "profiles",
)
PROFILE_SEARCH_KEYS = ("resources", "max_concurrent_trials", "search", "scheduler")
"""Non-config keys a profile may also set (merged into the space's own sections)."""
SEARCH_KEYS = ("algorithm", "metric", "mode", "num_samples", "seed")
SCHEDULER_KEYS = ("type", "max_t", "grace_period", "reduction_factor")
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")
METRIC_PREFIXES = ("render_", "avg_", "mv_")
SEED_KEY = "train.seed"
INDEX_KEY = "trial_index"
"""The Tune grid key that numbers the expanded trials (kept in each trial's params.json)."""
_DICT_FIELDS = ("tasks", "eval.baselines")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------
# YAML with line numbers
# ---------------------------------------------------------------------------


class LineDict(dict):
    """A mapping from YAML that remembers its own line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LineLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings are :class:`LineDict` with key line numbers."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark,
            ) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_lines(path: Path) -> LineDict:
    """Read a YAML mapping keeping line numbers; syntax errors name file and line."""
    if not path.is_file():
        raise UserError(f"search space file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=LineLoader)  # noqa: S506 (safe subclass)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        raise UserError(f"{path}: the search space file is empty")
    if not isinstance(data, LineDict):
        raise UserError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def plain(value: Any) -> Any:
    """Deep copy of YAML data as plain dicts and lists (JSON-ready)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# The parsed space
# ---------------------------------------------------------------------------


@dataclass
class Param:
    """One varying config key: its distribution, arguments and optional condition."""

    key: str
    kind: str
    args: list[Any]
    when: dict[str, list[Any]] = field(default_factory=dict)
    line: int = 0
    integer: bool = False
    """True when the config field is an int (``quniform`` then samples ints)."""

    @property
    def discrete(self) -> bool:
        return self.kind in ("grid", "choice")

    def describe(self) -> str:
        """``grid [a, b]`` / ``loguniform(0.5, 8)``, plus ``when ...``."""
        if self.discrete:
            text = f"{self.kind} [{', '.join(format_value(v) for v in self.args)}]"
        else:
            text = f"{self.kind}({', '.join(format_value(v) for v in self.args)})"
        if self.when:
            cond = ", ".join(
                f"{k} in [{', '.join(format_value(v) for v in vals)}]" for k, vals in self.when.items()
            )
            text += f"  when {cond}"
        return text

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the condition holds for the trial's ``values`` (dotted keys)."""
        return all(values.get(k) in allowed for k, allowed in self.when.items())

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn like Tune's domain of the same name would draw it."""
        lo = self.args[0] if self.args else None
        hi = self.args[1] if len(self.args) > 1 else None
        if self.discrete:
            return copy.deepcopy(self.args[int(rng.integers(len(self.args)))])
        if self.kind == "uniform":
            return float(rng.uniform(lo, hi))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "randint":
            return int(rng.integers(lo, hi))
        q = self.args[2]
        value = float(np.round(rng.uniform(lo, hi) / q) * q)
        return int(round(value)) if self.integer else value

    def to_tune(self) -> Any:
        """The matching Tune domain (used for random/optuna param spaces)."""
        from ray import tune

        if self.discrete:
            return tune.choice(self.args)
        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "randint":
            return tune.randint(*self.args)
        if self.integer:
            return tune.qrandint(*self.args)
        return tune.quniform(*self.args)

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (define-by-run) for this key's value."""
        lo = self.args[0] if self.args else None
        hi = self.args[1] if len(self.args) > 1 else None
        if self.discrete:
            labels = [_label(v) for v in self.args]
            picked = trial.suggest_categorical(self.key, labels)
            return copy.deepcopy(self.args[labels.index(picked)])
        if self.kind == "uniform":
            return trial.suggest_float(self.key, lo, hi)
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, lo, hi, log=True)
        if self.kind == "randint":
            return trial.suggest_int(self.key, lo, hi - 1)
        if self.integer:
            return trial.suggest_int(self.key, lo, hi, step=self.args[2])
        return trial.suggest_float(self.key, lo, hi, step=self.args[2])


def _label(value: Any) -> Any:
    """Optuna categoricals take only scalars: lists/mappings become their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


@dataclass
class SearchSettings:
    algorithm: str = "grid"
    metric: str | list[str] = "loss"
    mode: str | list[str] = "min"
    num_samples: int = 1
    seed: int = 0

    @property
    def multi_objective(self) -> bool:
        return isinstance(self.metric, list)


@dataclass
class SchedulerSettings:
    type: str = "asha"
    max_t: int = 1
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass
class Resources:
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class Space:
    """A validated search space with its chosen profile and ``--set`` overrides applied."""

    path: Path
    name: str
    description: str
    paper: str | None
    base_tree: dict[str, Any]
    static: list[tuple[str, Any]]
    """Dotted overrides for every trial: fixed, then the profile, then ``--set``."""
    params: list[Param]
    seeds: list[int]
    baseline: dict[str, Any] | str | None
    baselines: str | None
    search: SearchSettings
    scheduler: SchedulerSettings | None
    resources: Resources
    max_concurrent_trials: int
    profiles: list[str]
    profile: str | None
    overrides: list[str]
    raw: dict[str, Any]

    # -- configs ------------------------------------------------------------

    def tree(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """The nested config mapping of a trial (``values``: sampled dotted keys)."""
        tree = copy.deepcopy(self.base_tree)
        for key, value in self.static:
            set_dotted(tree, key, copy.deepcopy(value))
        for key, value in (values or {}).items():
            if key != INDEX_KEY and value is not None:
                set_dotted(tree, key, copy.deepcopy(value))
        return tree

    def static_config(self) -> Config:
        """The config shared by all trials (base + fixed + profile + --set)."""
        return load_config(self.tree())

    def trial_config(self, values: dict[str, Any]) -> Config:
        """One trial's config: the static config with its sampled values and seed."""
        return load_config(self.tree(values))

    # -- trials -------------------------------------------------------------

    @property
    def ablated_keys(self) -> list[str]:
        """Keys that vary between trials (``train.seed`` when several seeds)."""
        keys = [p.key for p in self.params]
        if len(self.seeds) > 1:
            keys.append(SEED_KEY)
        return keys

    def expand(self) -> list[dict[str, Any]]:
        """The trials of a grid or random search, each a dict of dotted keys.

        Grid: the product of all grid/choice values; a conditional key whose
        condition fails is set to None once (no duplicate trials). Random: every
        grid point x ``num_samples`` draws (seeded by ``search.seed``). Both are
        repeated once per seed (``train.seed``). Optuna samples online: raises.
        """
        if self.search.algorithm == "optuna":
            raise ValueError("an optuna search samples its trials online; nothing to expand")
        static = load_config(self.tree()).flat()
        grid = [p for p in self.params if p.kind == "grid" or self.search.algorithm == "grid"]
        rng = np.random.default_rng(self.search.seed)
        samples = 1 if self.search.algorithm == "grid" else self.search.num_samples
        configs: list[dict[str, Any]] = []
        for point in _grid_points(grid, static):
            for _ in range(samples):
                values: dict[str, Any] = {}
                for param in self.params:
                    if param.key in point:
                        values[param.key] = point[param.key]
                    elif param.active({**static, **values}):
                        values[param.key] = param.sample(rng)
                    else:
                        values[param.key] = None
                configs.append(values)
        trials = []
        for values in configs:
            for seed in self.seeds:
                trials.append({**values, SEED_KEY: seed})
        return trials

    def define_by_run(self) -> DefineByRun:
        """Optuna define-by-run space: suggests active keys in order, inactive -> None."""
        return DefineByRun(self.params, load_config(self.tree()).flat(), self.seeds[0])

    def baseline_config(self, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """The single-task-baseline view of a trial: regularizer, aux heads and cross-view
        parts off, first seed, no per-task weights (the hash key of the baseline cache)."""
        cfg = load_config(self.tree(values)).to_dict()
        cfg["name"] = "baseline"
        cfg["regularizer"] = load_config({}).to_dict()["regularizer"]
        cfg["aux_heads"]["enabled"] = False
        cfg["cvm"] = load_config({}).to_dict()["cvm"]
        cfg["eval"]["baselines"] = {}
        cfg["eval"]["outputs"] = ["heads"]
        cfg["eval"]["multiview"] = False
        cfg["data"]["num_views"] = 1
        cfg["data"]["source_tasks"] = []
        cfg["train"]["seed"] = self.seeds[0]
        cfg["tasks"] = {}
        return cfg

    def to_json(self) -> dict[str, Any]:
        """The parsed space as a plain dict (for ``mtlsearch.json``)."""
        return plain(self.raw)


class DefineByRun:
    """Optuna define-by-run space (a picklable callable, as Tune pickles its searcher)."""

    def __init__(self, params: list[Param], static: dict[str, Any], seed: int) -> None:
        self.params = params
        self.static = static
        self.seed = seed

    def __call__(self, ot_trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for param in self.params:
            active = param.active({**self.static, **values})
            values[param.key] = param.suggest(ot_trial) if active else None
        values[SEED_KEY] = self.seed
        return values


def baseline_hash(tree: dict[str, Any]) -> str:
    """Stable short hash of a baseline-relevant config mapping."""
    text = json.dumps(tree, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _grid_points(params: list[Param], static: dict[str, Any]) -> list[dict[str, Any]]:
    """Product of discrete values in order; inactive conditional keys take None once."""
    points: list[dict[str, Any]] = [{}]
    for param in params:
        nxt = []
        for point in points:
            if param.active({**static, **point}):
                nxt.extend({**point, param.key: copy.deepcopy(v)} for v in param.args)
            else:
                nxt.append({**point, param.key: None})
        points = nxt
    return points


def format_value(value: Any) -> str:
    """Compact text for tables: lists as ``[a, b]``, floats with 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text table with a header line."""
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Parsing and validation
# ---------------------------------------------------------------------------


class _Ctx:
    """Error helper: every message names the file, the line and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, line: int, key: str, message: str) -> UserError:
        where = f"{self.path} line {line}" if line else str(self.path)
        return UserError(f"{where}: {key}: {message}")


_FIELDS: dict[str, Any] | None = None


def _fields() -> dict[str, Any]:
    global _FIELDS
    if _FIELDS is None:
        _FIELDS = config_fields()
    return _FIELDS


def check_key(key: Any) -> str | None:
    """None if ``key`` is a dotted config key (or a section of them), else a hint."""
    known = _fields()
    if not isinstance(key, str) or not key:
        return f"expected a dotted config key, got {key!r}"
    if key in known or any(k.startswith(key + ".") for k in known):
        return None
    if any(key.startswith(d + ".") and key.count(".") == d.count(".") + 1 for d in _DICT_FIELDS):
        return None
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown config key{hint}"


def _is_int_field(key: str) -> bool:
    default = _fields().get(key)
    return isinstance(default, int) and not isinstance(default, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping(ctx: _Ctx, parent: LineDict, key: str, label: str) -> LineDict:
    value = parent.get(key)
    if value is None:
        return LineDict()
    if not isinstance(value, dict):
        raise ctx.error(parent.line_of(key), label, f"expected a mapping, got {value!r}")
    return value


def _check_keys(ctx: _Ctx, mapping: LineDict, allowed: tuple[str, ...], label: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ctx.error(
                mapping.line_of(key), f"{label}{key}",
                f"unknown key{hint}; allowed: {', '.join(allowed)}",
            )


def _dotted_map(ctx: _Ctx, mapping: LineDict, label: str) -> list[tuple[str, Any, int]]:
    """Validate the keys of a ``{dotted.key: value}`` mapping; return (key, value, line)."""
    out = []
    for key, value in mapping.items():
        hint = check_key(key)
        if hint:
            raise ctx.error(mapping.line_of(key), f"{label}.{key}", hint)
        out.append((key, plain(value), mapping.line_of(key)))
    return out


def _parse_param(ctx: _Ctx, key: str, spec: Any, line: int) -> Param:
    label = f"space.{key}"
    if not isinstance(spec, dict):
        raise ctx.error(
            line, label,
            f"expected a distribution such as {{grid: [...]}} (one of {', '.join(DISTRIBUTIONS)}), got {spec!r}",
        )
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    for k in spec:
        if k not in DISTRIBUTIONS and k != "when":
            raise ctx.error(
                spec.line_of(k), label,
                f"unknown distribution {k!r} (known: {', '.join(DISTRIBUTIONS)}; plus 'when')",
            )
    if len(kinds) != 1:
        raise ctx.error(line, label, f"needs exactly one of {', '.join(DISTRIBUTIONS)}")
    kind = kinds[0]
    args = plain(spec[kind])
    kline = spec.line_of(kind)
    if not isinstance(args, list) or not args:
        raise ctx.error(kline, label, f"{kind}: expected a non-empty list, got {args!r}")
    integer = _is_int_field(key)
    if kind in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(_number(a) for a in args) or not args[0] < args[1]:
            raise ctx.error(kline, label, f"{kind}: expected [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise ctx.error(kline, label, f"loguniform: bounds must be positive, got {args!r}")
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise ctx.error(kline, label, f"randint: bounds must be integers, got {args!r}")
        if kind != "randint" and integer:
            raise ctx.error(
                kline, label,
                f"{kind} samples floats but {key} is an integer; use randint or quniform",
            )
    if kind == "quniform":
        if len(args) != 3 or not all(_number(a) for a in args) or not args[0] < args[1] or args[2] <= 0:
            raise ctx.error(kline, label, f"quniform: expected [low, high, q] with low < high, q > 0, got {args!r}")
        if integer and not all(isinstance(a, int) for a in args):
            raise ctx.error(kline, label, f"quniform: {key} is an integer; low, high and q must be integers")
    if kind in ("grid", "choice"):
        for i, a in enumerate(args):
            if a in args[:i]:
                raise ctx.error(kline, label, f"{kind}: value {a!r} is listed twice")
    when: dict[str, list[Any]] = {}
    if "when" in spec:
        cond = spec["when"]
        wline = spec.line_of("when")
        if not isinstance(cond, dict) or not cond:
            raise ctx.error(wline, f"{label}.when", f"expected a mapping {{key: value}}, got {cond!r}")
        for ckey, cval in cond.items():
            hint = check_key(ckey)
            if hint:
                raise ctx.error(cond.line_of(ckey), f"{label}.when.{ckey}", hint)
            if ckey == key:
                raise ctx.error(cond.line_of(ckey), f"{label}.when", "a key cannot depend on itself")
            cval = plain(cval)
            when[ckey] = cval if isinstance(cval, list) else [cval]
    return Param(key=key, kind=kind, args=args, when=when, line=line, integer=integer)


def _read_profile(
    ctx: _Ctx, pname: str, pbody: Any, pline: int
) -> tuple[list[tuple[str, Any, str, int, _Ctx]], LineDict]:
    """A profile: a mapping (optionally ``extends: FILE``) or a file path string.

    Returns its config items (key, value, label, line, file context) in order (the
    extended file's first) and its non-config sections (resources, search, ...).
    """
    label = f"profiles.{pname}"
    if isinstance(pbody, str):
        body = LineDict({"extends": pbody})
        body.line = pline
        body.key_lines["extends"] = pline
        pbody = body
    if pbody is None:
        pbody = LineDict()
    if not isinstance(pbody, dict):
        raise ctx.error(pline, label, f"expected a mapping of config keys or a profile file, got {pbody!r}")
    items: list[tuple[str, Any, str, int, _Ctx]] = []
    extra = LineDict()
    extra.line = pbody.line
    if "extends" in pbody:
        ref = pbody["extends"]
        if not isinstance(ref, str):
            raise ctx.error(pbody.line_of("extends"), f"{label}.extends", f"expected a file path, got {ref!r}")
        ppath = ctx.path.parent / ref
        if not ppath.is_file():
            raise ctx.error(pbody.line_of("extends"), f"{label}.extends", f"profile file not found: {ppath}")
        sub = load_yaml_lines(ppath)
        if "extends" in sub:
            raise _Ctx(ppath).error(sub.line_of("extends"), "extends", "profile files cannot extend others")
        sub_items, sub_extra = _read_profile(_Ctx(ppath), pname, sub, 1)
        items += [(k, v, k, line, c) for k, v, _, line, c in sub_items]
        for k, v in sub_extra.items():
            extra[k] = v
            extra.key_lines[k] = sub_extra.line_of(k)
    cfg_part = LineDict()
    cfg_part.line = pbody.line
    for k, v in pbody.items():
        if k == "extends":
            continue
        target = extra if k in PROFILE_SEARCH_KEYS else cfg_part
        if target is extra and isinstance(extra.get(k), dict) and isinstance(v, dict):
            merged = LineDict(extra[k])
            merged.line, merged.key_lines = extra[k].line, dict(extra[k].key_lines)
            for k2, v2 in v.items():
                merged[k2] = v2
                merged.key_lines[k2] = v.line_of(k2)
            v = merged
        target[k] = v
        target.key_lines[k] = pbody.line_of(k)
    items += [(k, v, f"{label}.{k}", line, ctx) for k, v, line in _dotted_map(ctx, cfg_part, label)]
    return items, extra


def _candidates(param: Param) -> list[Any]:
    """Values that stand for the parameter in validation: choices or the extremes."""
    if param.discrete:
        return list(param.args)
    lo, hi = param.args[0], param.args[1]
    if param.kind == "randint":
        return [lo, hi - 1]
    if param.kind == "quniform":
        return [lo, hi] if param.integer else [float(lo), float(hi)]
    return [float(lo), float(hi), float((lo + hi) / 2)]


def _known_metric(name: str, tasks: list[str]) -> str | None:
    """None if ``name`` is a metric the trainer reports, else why not."""
    if name in ("loss", "delta_m", "alpha", "iteration"):
        return None
    if name.startswith("loss_"):
        return None if name[5:] in tasks else f"task {name[5:]!r} is not trained"
    bare = name
    for prefix in METRIC_PREFIXES:
        if bare.startswith(prefix):
            bare = bare[len(prefix):]
    task = bare.split("_", 1)[0]
    if task not in TASKS or "_" not in bare:
        return "expected loss, delta_m or <task>_<metric> such as semseg_miou or depth_rmse"
    if task not in tasks:
        return f"task {task!r} is not trained (tasks: {', '.join(tasks)})"
    return None


def _metric_direction(name: str) -> str | None:
    """'max'/'min' for the primary metrics and delta_m/loss; None when unknown."""
    if name == "delta_m":
        return "max"
    if name == "loss" or name.startswith("loss_"):
        return "min"
    bare = name
    for prefix in METRIC_PREFIXES:
        if bare.startswith(prefix):
            bare = bare[len(prefix):]
    task, _, metric = bare.partition("_")
    spec = TASKS.get(task)
    if spec is None or metric != spec.metric:
        return None
    return "max" if spec.higher_is_better else "min"


def _paper_tables() -> dict[str, Any] | None:
    try:
        text = resources.files("mtlsearch").joinpath("paper/tables.yaml").read_text()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None
    data = yaml.safe_load(text)
    return data if isinstance(data, dict) else None


def load_space(
    path: str | Path,
    profile: str | None = None,
    overrides: list[str] | None = None,
) -> Space:
    """Parse and validate a search space file with a profile and ``--set`` overrides.

    Everything is checked here, before Ray starts: keys, types, distributions,
    conditions, algorithm/metric/scheduler compatibility and (for grid and random
    searches) the config of every trial.
    """
    path = Path(path)
    ctx = _Ctx(path)
    raw = load_yaml_lines(path)
    _check_keys(ctx, raw, TOP_KEYS, "")

    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ctx.error(raw.line_of("name"), "name", f"expected a folder-safe name ([A-Za-z0-9_.-]), got {name!r}")
    description = raw.get("description", "") or ""
    if not isinstance(description, str):
        raise ctx.error(raw.line_of("description"), "description", "expected a string")

    paper = raw.get("paper")
    if paper is not None:
        if not isinstance(paper, str) or paper.count("/") != 1:
            raise ctx.error(raw.line_of("paper"), "paper", f"expected 'paper/table' such as 3dmtl/table6_render_tasks, got {paper!r}")
        tables = _paper_tables()
        group, table = paper.split("/")
        if tables is not None and table not in (tables.get(group) or {}):
            known = [f"{g}/{t}" for g, ts in tables.items() if isinstance(ts, dict) for t in ts]
            raise ctx.error(raw.line_of("paper"), "paper", f"unknown table {paper!r} (known: {', '.join(known)})")

    # base config ------------------------------------------------------------
    base = raw.get("base")
    base_line = raw.line_of("base")
    if base is None:
        base_tree: dict[str, Any] = {}
    elif isinstance(base, str):
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise ctx.error(base_line, "base", f"config file not found: {base_path}")
        base_tree = read_yaml(base_path)
    elif isinstance(base, dict):
        base_tree = plain(base)
    else:
        raise ctx.error(base_line, "base", f"expected a config file path or a mapping, got {base!r}")
    try:
        load_config(base_tree)
    except UserError as err:
        raise ctx.error(base_line, "base", str(err)) from None

    # static overrides: fixed, profile, --set ----------------------------------
    fixed = _dotted_map(ctx, _mapping(ctx, raw, "fixed", "fixed"), "fixed")
    profiles_map = _mapping(ctx, raw, "profiles", "profiles")
    profile_items: dict[str, list[tuple[str, Any, str, int, _Ctx]]] = {}
    profile_extra: dict[str, LineDict] = {}
    for pname, pbody in profiles_map.items():
        items, extra = _read_profile(ctx, pname, pbody, profiles_map.line_of(pname))
        profile_items[pname] = items
        profile_extra[pname] = extra
    if profile is not None and profile not in profile_items:
        known = ", ".join(profile_items) or "none defined"
        raise ctx.error(raw.line_of("profiles"), "profiles",
                        f"no profile {profile!r} (known: {known})")
    static: list[tuple[str, Any]] = [(k, v) for k, v, _ in fixed]
    static_lines: dict[str, tuple[str, int, _Ctx | None]] = {
        k: (f"fixed.{k}", line, ctx) for k, _, line in fixed
    }
    if profile is not None:
        for k, v, label, line, pctx in profile_items[profile]:
            static.append((k, v))
            static_lines[k] = (label, line, pctx)
    for text in overrides or []:
        k, v = parse_override(text)
        hint = check_key(k)
        if hint:
            raise UserError(f"--set {k}: {hint}")
        static.append((k, v))
        static_lines[k] = (f"--set {k}", 0, None)

    def tree_of(values: dict[str, Any] | None = None) -> dict[str, Any]:
        tree = copy.deepcopy(base_tree)
        for k, v in static:
            set_dotted(tree, k, copy.deepcopy(v))
        for k, v in (values or {}).items():
            if v is not None:
                set_dotted(tree, k, copy.deepcopy(v))
        return tree

    static_cfg = _check_static(ctx, base_tree, static, static_lines)

    # profile-level non-config sections override the space's own -------------
    def section(key: str) -> Any:
        value = raw.get(key)
        if profile is not None and key in profile_extra[profile]:
            pval = profile_extra[profile][key]
            if isinstance(value, dict) and isinstance(pval, dict):
                merged = LineDict(value)
                merged.line, merged.key_lines = value.line, dict(value.key_lines)
                for k2, v2 in pval.items():
                    merged[k2] = v2
                    merged.key_lines[k2] = pval.line_of(k2)
                return merged
            return pval
        return value

    # space ------------------------------------------------------------------
    space_map = _mapping(ctx, raw, "space", "space")
    params: list[Param] = []
    for key, spec in space_map.items():
        line = space_map.line_of(key)
        hint = check_key(key)
        if hint:
            raise ctx.error(line, f"space.{key}", hint)
        if key == SEED_KEY:
            raise ctx.error(line, f"space.{key}", "list seeds under the top-level 'seeds' key instead")
        params.append(_parse_param(ctx, key, spec, line))
    seen: set[str] = set()
    varying = {p.key for p in params}
    for param in params:
        for ckey in param.when:
            if ckey in varying and ckey not in seen:
                raise ctx.error(param.line, f"space.{param.key}.when",
                                f"{ckey} is defined below {param.key} in space; list it first")
        seen.add(param.key)

    # seeds ------------------------------------------------------------------
    seeds = plain(raw.get("seeds", [static_cfg.train.seed]))
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (
        not isinstance(seeds, list) or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise ctx.error(raw.line_of("seeds"), "seeds", f"expected a list of distinct integers, got {seeds!r}")

    # baseline / baselines ---------------------------------------------------
    baseline = raw.get("baseline")
    if isinstance(baseline, dict):
        items = _dotted_map(ctx, baseline, "baseline")
        baseline = {k: v for k, v, _ in items}
        for k, v, line in items:
            if k in varying:
                param = next(p for p in params if p.key == k)
                if param.discrete and v not in param.args:
                    raise ctx.error(line, f"baseline.{k}", f"{v!r} is not one of the space's values for {k}")
    elif baseline is not None and not isinstance(baseline, str):
        raise ctx.error(raw.line_of("baseline"), "baseline", f"expected a row label or a mapping of config keys, got {baseline!r}")
    baselines = raw.get("baselines")
    if baselines not in (None, "single_task"):
        raise ctx.error(raw.line_of("baselines"), "baselines", f"expected single_task (or leave it out), got {baselines!r}")

    # search -----------------------------------------------------------------
    search_map = section("search")
    if search_map is None:
        search_map = LineDict()
    if not isinstance(search_map, dict):
        raise ctx.error(raw.line_of("search"), "search", f"expected a mapping, got {search_map!r}")
    _check_keys(ctx, search_map, SEARCH_KEYS, "search.")
    sline = search_map.line_of
    discrete_only = all(p.discrete for p in params)
    algorithm = search_map.get("algorithm", "grid" if discrete_only else "random")
    if algorithm not in ALGORITHMS:
        raise ctx.error(sline("algorithm"), "search.algorithm", f"expected one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if algorithm == "grid" and not discrete_only:
        bad = next(p for p in params if not p.discrete)
        raise ctx.error(bad.line, f"space.{bad.key}",
                        f"{bad.kind} cannot be enumerated by algorithm grid; use grid/choice values or algorithm random/optuna")
    if algorithm == "optuna":
        for p in params:
            if p.kind == "grid":
                raise ctx.error(p.line, f"space.{p.key}",
                                "algorithm optuna cannot take grid (Tune's OptunaSearch has no grid_search); "
                                "use choice, or algorithm grid to enumerate every value")
        if len(seeds) > 1:
            raise ctx.error(raw.line_of("seeds"), "seeds",
                            "algorithm optuna scores each suggestion once: give one seed "
                            "(repeat seeds with algorithm grid or random)")
    metric = plain(search_map.get("metric", "delta_m" if baselines else "loss"))
    mode = plain(search_map.get("mode"))
    metrics = metric if isinstance(metric, list) else [metric]
    if not metrics or not all(isinstance(m, str) for m in metrics):
        raise ctx.error(sline("metric"), "search.metric", f"expected a metric name or a list of them, got {metric!r}")
    for m in metrics:
        why = _known_metric(m, static_cfg.task_names)
        if why:
            raise ctx.error(sline("metric"), "search.metric", f"{m}: {why}")
        if m == "delta_m" and not baselines and not static_cfg.eval.baselines:
            raise ctx.error(sline("metric"), "search.metric",
                            "delta_m needs single-task baselines: add 'baselines: single_task' or set eval.baselines")
    if mode is None:
        modes = [_metric_direction(m) or "max" for m in metrics]
        mode = modes if isinstance(metric, list) else modes[0]
    modes = mode if isinstance(mode, list) else [mode]
    if isinstance(metric, list) != isinstance(mode, list) or len(modes) != len(metrics):
        raise ctx.error(sline("mode"), "search.mode", f"give one mode per metric: metric {metric!r}, mode {mode!r}")
    for m, md in zip(metrics, modes):
        if md not in ("max", "min"):
            raise ctx.error(sline("mode"), "search.mode", f"expected max or min, got {md!r}")
        expected = _metric_direction(m)
        if expected is not None and md != expected:
            raise ctx.error(sline("mode"), "search.mode", f"{m} is better when {'higher' if expected == 'max' else 'lower'}: use mode {expected}")
    if isinstance(metric, list) and algorithm != "optuna":
        raise ctx.error(sline("metric"), "search.metric", "several metrics (multi-objective) need algorithm optuna")
    num_samples = search_map.get("num_samples", 1)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ctx.error(sline("num_samples"), "search.num_samples", f"expected a positive integer, got {num_samples!r}")
    if algorithm == "grid" and "num_samples" in search_map and num_samples != 1:
        raise ctx.error(sline("num_samples"), "search.num_samples", "algorithm grid runs every grid point once (repeat with seeds)")
    sseed = search_map.get("seed", 0)
    if not isinstance(sseed, int) or isinstance(sseed, bool):
        raise ctx.error(sline("seed"), "search.seed", f"expected an integer, got {sseed!r}")
    search = SearchSettings(algorithm=algorithm, metric=metric, mode=mode, num_samples=num_samples, seed=sseed)

    # scheduler --------------------------------------------------------------
    sched_map = section("scheduler")
    scheduler = None
    if sched_map is not None:
        if not isinstance(sched_map, dict):
            raise ctx.error(raw.line_of("scheduler"), "scheduler", f"expected a mapping, got {sched_map!r}")
        _check_keys(ctx, sched_map, SCHEDULER_KEYS, "scheduler.")
        stype = sched_map.get("type", "asha")
        if stype != "asha":
            raise ctx.error(sched_map.line_of("type"), "scheduler.type", f"only asha is supported, got {stype!r}")
        if search.multi_objective:
            raise ctx.error(sched_map.line, "scheduler",
                            "ASHA needs one scalar metric; search.metric is a list (use delta_m)")
        evals = max(1, static_cfg.train.iterations // static_cfg.train.eval_every)
        values = {"max_t": evals, "grace_period": 1, "reduction_factor": 2}
        for k in ("max_t", "grace_period", "reduction_factor"):
            if k in sched_map:
                v = sched_map[k]
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise ctx.error(sched_map.line_of(k), f"scheduler.{k}", f"expected a positive integer, got {v!r}")
                values[k] = v
        if values["reduction_factor"] < 2:
            raise ctx.error(sched_map.line_of("reduction_factor"), "scheduler.reduction_factor", "must be >= 2")
        if values["grace_period"] > values["max_t"]:
            raise ctx.error(sched_map.line_of("grace_period"), "scheduler.grace_period",
                            f"exceeds max_t ({values['max_t']}, in evaluations)")
        scheduler = SchedulerSettings(type="asha", **values)

    # resources --------------------------------------------------------------
    res_map = section("resources")
    if res_map is None:
        res_map = LineDict()
    if not isinstance(res_map, dict):
        raise ctx.error(raw.line_of("resources"), "resources", f"expected a mapping, got {res_map!r}")
    _check_keys(ctx, res_map, RESOURCE_KEYS, "resources.")
    res = Resources()
    workers = res_map.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ctx.error(res_map.line_of("workers"), "resources.workers", f"expected an integer >= 1, got {workers!r}")
    res.workers = workers
    for k, minimum in (("cpus_per_worker", 0.0), ("gpus_per_worker", 0.0)):
        if k in res_map:
            v = res_map[k]
            ok = _number(v) and (v > minimum if k == "cpus_per_worker" else v >= minimum)
            if not ok:
                raise ctx.error(res_map.line_of(k), f"resources.{k}",
                                f"expected a number {'> 0' if k == 'cpus_per_worker' else '>= 0'}, got {v!r}")
            setattr(res, k, float(v))
    mct = section("max_concurrent_trials")
    if mct is None:
        mct = 1
    if not isinstance(mct, int) or isinstance(mct, bool) or mct < 1:
        raise ctx.error(raw.line_of("max_concurrent_trials"), "max_concurrent_trials", f"expected a positive integer, got {mct!r}")

    space = Space(
        path=path, name=name, description=description.strip(), paper=paper,
        base_tree=base_tree, static=static, params=params, seeds=seeds,
        baseline=baseline, baselines=baselines, search=search, scheduler=scheduler,
        resources=res, max_concurrent_trials=mct, profiles=list(profile_items),
        profile=profile, overrides=list(overrides or []), raw=raw,
    )

    # values: every candidate alone, then every trial of a grid/random search --
    for param in params:
        context = {k: v[0] for k, v in param.when.items()}
        for value in _candidates(param):
            try:
                load_config(tree_of({**context, param.key: value}))
            except UserError as err:
                raise ctx.error(param.line, f"space.{param.key}", f"value {format_value(value)}: {err}") from None
    if baselines and algorithm == "optuna":
        for param in params:
            if param.key.split(".")[0] not in ("regularizer", "aux_heads", "cvm", "eval"):
                raise ctx.error(param.line, f"space.{param.key}",
                                "with baselines: single_task, an optuna search may only vary keys the "
                                "baselines do not depend on (regularizer.*, aux_heads.*, cvm.*, eval.*)")
    if algorithm != "optuna":
        for trial in space.expand():
            try:
                load_config(tree_of(trial))
            except UserError as err:
                shown = ", ".join(f"{k}={format_value(v)}" for k, v in trial.items() if k in varying)
                raise UserError(f"{path}: the trial with {shown} has an invalid config: {err}") from None
    return space


def _check_static(
    ctx: _Ctx,
    base_tree: dict[str, Any],
    static: list[tuple[str, Any]],
    lines: dict[str, tuple[str, int, _Ctx | None]],
) -> Config:
    """Check base + static overrides; blame the override whose key the error names."""
    tree = copy.deepcopy(base_tree)
    for key, value in static:
        set_dotted(tree, key, copy.deepcopy(value))
    try:
        return load_config(tree)
    except UserError as err:
        message = str(err)
        named = re.findall(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+", message)
        for key, _ in reversed(static):
            if any(n == key or n.startswith(key + ".") or key.startswith(n + ".") for n in named):
                label, line, where = lines[key]
                if where is not None:
                    raise where.error(line, label, message) from None
                raise UserError(f"{label}: {message}") from None
        raise ctx.error(0, "config", f"base + fixed + profile + --set is invalid: {message}") from None


def describe(space: Space) -> str:
    """Human-readable summary of a space (used by ``--dry-run``)."""
    s = space.search
    lines = [
        f"search {space.name!r} from {space.path}"
        + (f" (profile {space.profile})" if space.profile else ""),
    ]
    if space.description:
        lines.append(f"  {space.description.splitlines()[0]}")
    metric = ", ".join(s.metric) if isinstance(s.metric, list) else s.metric
    mode = ", ".join(s.mode) if isinstance(s.mode, list) else s.mode
    lines.append(f"algorithm: {s.algorithm}   metric: {metric} ({mode})   seeds: {format_value(space.seeds)}")
    r = space.resources
    lines.append(
        f"resources per trial: {r.workers} worker(s) x {r.cpus_per_worker:g} CPU, "
        f"{r.gpus_per_worker:g} GPU; at most {space.max_concurrent_trials} trial(s) at a time"
    )
    if space.scheduler:
        sc = space.scheduler
        lines.append(f"scheduler: ASHA max_t={sc.max_t} grace_period={sc.grace_period} "
                     f"reduction_factor={sc.reduction_factor} (in evaluations)")
    if space.baselines:
        lines.append("single-task baselines: trained first (cached under <storage>/_baselines/)")
    if space.paper:
        lines.append(f"paper table: {space.paper}")
    return "\n".join(lines)


__all__ = [
    "DISTRIBUTIONS",
    "DefineByRun",
    "INDEX_KEY",
    "SEED_KEY",
    "LineDict",
    "LineLoader",
    "Param",
    "Resources",
    "SchedulerSettings",
    "SearchSettings",
    "Space",
    "baseline_hash",
    "describe",
    "format_table",
    "format_value",
    "load_space",
    "plain",
]
