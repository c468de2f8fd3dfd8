"""Loading a search-space file: YAML with lines, profiles, ``extends``, base configs.

Contract: :func:`load_space` parses and validates everything before Ray starts and
returns a :class:`~mtlsearch.space.spec.Space`. Every mistake is one ``UserError`` that
names the file that holds it (the space file, a profile file, the base config, or
``--set``), the line and the dotted key, e.g.
``x.yaml line 12: space.regularizer.alpha.mx: unknown config key (did you mean ...)``.
Config errors are located by the key the config schema reports (``ConfigError.key``),
never by parsing messages. Structure and ranges come from :mod:`mtlsearch.space.schema`,
distributions from :mod:`mtlsearch.space.distributions`, and grid/random searches above
:data:`~mtlsearch.space.expand.MAX_TRIALS` trials are refused before any is built.
"""

from __future__ import annotations

import difflib
import functools
import re
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mtlsearch.config import Config, ConfigError, config_fields, parse_override, validate_tree
from mtlsearch.config.errors import field_type, first_error
from mtlsearch.config.load import DICT_FIELDS, touches
from mtlsearch.config.registries import metric_direction, metric_problem
from mtlsearch.errors import UserError
from mtlsearch.execution.strategies import sampler_problem, scheduler_problem
from mtlsearch.execution.tracking import normalize_tracking
from mtlsearch.space.distributions import DISTRIBUTIONS, SpecError
from mtlsearch.space.rowcheck import check_conditions, check_values, label_baseline
from mtlsearch.space.schema import NAME_PATTERN, PROFILE_SECTIONS, SpaceFile
from mtlsearch.space.spec import (
    SEED_KEY,
    CheckpointPolicy,
    Param,
    Resources,
    SchedulerSettings,
    SearchSettings,
    Space,
)
from mtlsearch.yamlio import LineDict, line_of, load_mapping, parse, plain

MAX_KEYS = 200
"""Most keys one ``space`` may vary."""


# ---------------------------------------------------------------------------
# Where a value came from
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """A place in a YAML file: ``file``, the mapping ``root`` that holds the value at
    ``prefix + loc``, and the label the user knows it by (``profiles.cpu.`` + key)."""

    file: Path | None
    root: Any
    prefix: tuple[Any, ...] = ()
    label: str = ""

    def line(self, loc: tuple[Any, ...] = ()) -> int:
        return line_of(self.root, self.prefix + loc) if self.root is not None else 0

    def error(self, loc: tuple[Any, ...], message: str, key: str | None = None) -> UserError:
        """``FILE line N: LABEL+key: message`` (``--set key: message`` without a file)."""
        dotted = key if key is not None else ".".join(str(p) for p in loc)
        label = f"{self.label}{dotted}" if dotted else self.label.rstrip(".")
        if self.file is None:
            return UserError(f"{label}: {message}")
        line = self.line(loc)
        where = f"{self.file} line {line}" if line else str(self.file)
        return UserError(f"{where}: {label}: {message}" if label else f"{where}: {message}")


@dataclass
class Item:
    """One static config override (``fixed``, profile or ``--set``) and its origin."""

    key: str
    value: Any
    origin: Origin
    loc: tuple[Any, ...]

    def error(self, message: str) -> UserError:
        return self.origin.error(self.loc, message, self.key)


# ---------------------------------------------------------------------------
# Config keys
# ---------------------------------------------------------------------------


@functools.cache
def _fields() -> dict[str, Any]:
    return config_fields()


def check_key(key: Any) -> str | None:
    """None if ``key`` is a dotted config key (or a section of them), else a hint."""
    known = _fields()
    if not isinstance(key, str) or not key:
        return f"expected a dotted config key, got {key!r}"
    if key in known or any(k.startswith(key + ".") for k in known):
        return None
    if any(key.startswith(d + ".") and key.count(".") == d.count(".") + 1 for d in DICT_FIELDS):
        return None
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"unknown config key{hint}"


def _is_int_field(key: str) -> bool:
    """Whether the config schema declares ``key`` an integer (or a choice of integers)."""
    ann = field_type(Config, tuple(key.split(".")))
    if typing.get_origin(ann) is typing.Literal:
        return all(isinstance(a, int) and not isinstance(a, bool) for a in typing.get_args(ann))
    return ann is int


def _items(mapping: Any, origin: Origin) -> list[Item]:
    """``{dotted.key: value}`` as checked :class:`Item` s."""
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise origin.error((), f"expected a mapping of dotted config keys, got {mapping!r}")
    out = []
    for key, value in mapping.items():
        item = Item(str(key), plain(value), origin, (key,))
        hint = check_key(key)
        if hint:
            raise item.error(hint)
        out.append(item)
    return out


# ---------------------------------------------------------------------------
# Profiles and the sections they merge
# ---------------------------------------------------------------------------


class Sections:
    """The non-config sections (``search``, ``scheduler``, ...) merged from several
    places, remembering the origin of every section and sub-key."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.origins: dict[tuple[Any, ...], Origin] = {}

    def origin(self, loc: tuple[Any, ...], default: Origin) -> Origin:
        """Where the value at ``loc`` came from (the longest known prefix)."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origins:
                return self.origins[loc[:n]]
        return default

    def merge(self, key: str, value: Any, origin_of: Any) -> None:
        """Set section ``key``; a mapping over a mapping is merged key by key.
        ``origin_of(loc)`` gives the origin of each merged part."""
        old = self.tree.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            self.tree[key] = {**old, **value}
            for sub in value:
                self.origins[(key, sub)] = origin_of((key, sub))
            return
        self.tree[key] = value
        self.origins = {loc: o for loc, o in self.origins.items() if loc[0] != key}
        self.origins[(key,)] = origin_of((key,))
        if isinstance(value, dict):
            for sub in value:
                self.origins[(key, sub)] = origin_of((key, sub))


@dataclass
class Profile:
    """A profile's config items (an extended file's first) and non-config sections."""

    items: list[Item]
    sections: Sections


def _read_profile(space_path: Path, raw: LineDict, pname: str, body: Any) -> Profile:
    """A profile: a mapping (optionally ``extends: FILE``), a file path, or null."""
    here = Origin(space_path, raw, ("profiles", pname), f"profiles.{pname}.")
    ref_origin, ref_loc = here, ("extends",)
    if isinstance(body, str):
        body = {"extends": body}
        ref_origin, ref_loc = Origin(space_path, raw, ("profiles",), "profiles."), (pname,)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise here.error((), f"expected a mapping of config keys or a profile file, got {body!r}")
    profile = Profile([], Sections())
    if "extends" in body:
        ref = body["extends"]
        if not isinstance(ref, str):
            raise ref_origin.error(ref_loc, f"expected a file path, got {ref!r}")
        ppath = space_path.parent / ref
        if not ppath.is_file():
            raise ref_origin.error(ref_loc, f"profile file not found: {ppath}")
        sub = load_mapping(ppath, "profile file")
        in_file = Origin(ppath, sub)
        if "extends" in sub:
            raise in_file.error(("extends",), "profile files cannot extend others")
        for key, value in sub.items():
            if key in PROFILE_SECTIONS:
                profile.sections.merge(key, value, lambda loc, o=in_file: o)
        profile.items += _items({k: v for k, v in sub.items() if k not in PROFILE_SECTIONS}, in_file)
    rest = {k: v for k, v in body.items() if k != "extends"}
    for key, value in rest.items():
        if key in PROFILE_SECTIONS:
            profile.sections.merge(key, value, lambda loc, o=here: o)
    profile.items += _items({k: v for k, v in rest.items() if k not in PROFILE_SECTIONS}, here)
    return profile


# ---------------------------------------------------------------------------
# Pieces of the space
# ---------------------------------------------------------------------------


def _schema_check(doc: dict[str, Any], sections: Sections, file: Origin) -> SpaceFile:
    try:
        return SpaceFile.model_validate(doc)
    except ValidationError as err:
        key, loc, reason = first_error(err, SpaceFile, what="key")
        raise sections.origin(loc, file).error(loc, reason, key) from None


def _paper_tables() -> dict[str, Any] | None:
    try:
        text = resources.files("mtlsearch").joinpath("paper/tables.yaml").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError, UnicodeDecodeError):
        return None
    data = parse(text, "mtlsearch/paper/tables.yaml")
    return data if isinstance(data, dict) else None


def _base(path: Path, raw: LineDict, file: Origin) -> tuple[dict[str, Any], Origin]:
    """The base config tree and where its keys come from."""
    base = raw.get("base")
    if base is None:
        return {}, file
    if isinstance(base, str):
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise file.error(("base",), f"config file not found: {base_path}")
        tree = load_mapping(base_path, "config file")
        return tree, Origin(base_path, tree)
    return base, Origin(path, raw, ("base",), "base.")


def _parse_param(file: Origin, key: str, spec: Any, integer: bool) -> Param:
    loc: tuple[Any, ...] = ("space", key)
    label = f"space.{key}"
    names = ", ".join(DISTRIBUTIONS)
    if not isinstance(spec, dict):
        raise file.error(loc, f"expected a distribution such as {{grid: [...]}} (one of {names}), got {spec!r}", label)
    for k in spec:
        if k not in DISTRIBUTIONS and k != "when":
            raise file.error(loc + (k,), f"unknown distribution {k!r} (known: {names}; plus 'when')", label)
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    if len(kinds) != 1:
        raise file.error(loc, f"needs exactly one of {names}", label)
    kind = kinds[0]
    try:
        dist = DISTRIBUTIONS[kind].parse(plain(spec[kind]), key, integer)
    except SpecError as err:
        raise file.error(loc + (kind,), str(err), label) from None
    when: dict[str, list[Any]] = {}
    if "when" in spec:
        cond = spec["when"]
        if not isinstance(cond, dict) or not cond:
            raise file.error(loc + ("when",), f"expected a mapping {{key: value}}, got {cond!r}", f"{label}.when")
        for ckey, cval in cond.items():
            hint = check_key(ckey)
            if hint:
                raise file.error(loc + ("when", ckey), hint, f"{label}.when.{ckey}")
            if ckey == key:
                raise file.error(loc + ("when", ckey), "a key cannot depend on itself", f"{label}.when")
            cval = plain(cval)
            when[ckey] = cval if isinstance(cval, list) else [cval]
    return Param(key=key, dist=dist, when=when, line=file.line(loc))


def _params(file: Origin, space_map: dict[str, Any] | None) -> list[Param]:
    space_map = space_map or {}
    if len(space_map) > MAX_KEYS:
        raise file.error(("space",), f"{len(space_map)} keys vary; at most {MAX_KEYS}")
    params = []
    for key, spec in space_map.items():
        hint = check_key(key)
        if hint:
            raise file.error(("space", key), hint, f"space.{key}")
        if key == SEED_KEY:
            raise file.error(("space", key), "list seeds under the top-level 'seeds' key instead", f"space.{key}")
        params.append(_parse_param(file, key, spec, _is_int_field(key)))
    seen: set[str] = set()
    varying = {p.key for p in params}
    for param in params:
        for ckey in param.when:
            if ckey in varying and ckey not in seen:
                raise file.error(("space", param.key), f"{ckey} is defined below {param.key} in space; list it first",
                                 f"space.{param.key}.when")
        seen.add(param.key)
    return params


def _static_check(space: Space, items: list[Item], base_origin: Origin) -> Config:
    """The static config; a bad value blames the last override that set its key, else
    the base config."""
    try:
        return validate_tree(space.tree())
    except ConfigError as err:
        blamed = next((item for item in reversed(items) if touches(err.key, item.key)), None)
        if blamed is not None:
            if err.key.startswith((blamed.key + ".", blamed.key + "[")) or err.key == blamed.key:
                raise blamed.origin.error(blamed.loc, err.reason, err.key) from None
            raise blamed.error(str(err)) from None
        loc = tuple(err.key.replace("[", ".").replace("]", "").split("."))
        raise base_origin.error(loc, err.reason, err.key) from None


def _search(file: Origin, doc: SpaceFile, sections: Sections, params: list[Param], seeds: list[int],
            static_cfg: Config, baselines: str | None) -> SearchSettings:
    sec = doc.search

    def error(key: str, message: str) -> UserError:
        loc = ("search", key)
        return sections.origin(loc, file).error(loc, message)

    discrete_only = all(p.discrete for p in params)
    algorithm = (sec.algorithm if sec else None) or ("grid" if discrete_only else "random")
    if algorithm == "grid" and not discrete_only:
        bad = next(p for p in params if not p.discrete)
        raise file.error(("space", bad.key), f"{bad.kind} cannot be enumerated by algorithm grid; "
                         "use grid/choice values or algorithm random/optuna", f"space.{bad.key}")
    if algorithm == "optuna":
        for p in params:
            if p.kind == "grid":
                raise file.error(("space", p.key), "algorithm optuna cannot take grid (Tune's OptunaSearch "
                                 "has no grid_search); use choice, or algorithm grid to enumerate every value",
                                 f"space.{p.key}")
    metric = (sec.metric if sec else None) or ("delta_m" if baselines else "loss")
    metrics = metric if isinstance(metric, list) else [metric]
    for m in metrics:
        why = metric_problem(m, static_cfg.task_names)
        if why:
            raise error("metric", f"{m}: {why}")
        if m == "delta_m" and not baselines and not static_cfg.eval.baselines:
            raise error("metric", "delta_m needs single-task baselines: add 'baselines: single_task' "
                        "or set eval.baselines")
    mode = sec.mode if sec else None
    if mode is None:
        modes = [metric_direction(m) or "max" for m in metrics]
        mode = modes if isinstance(metric, list) else modes[0]
    modes = mode if isinstance(mode, list) else [mode]
    if isinstance(metric, list) != isinstance(mode, list) or len(modes) != len(metrics):
        raise error("mode", f"give one mode per metric: metric {metric!r}, mode {mode!r}")
    for m, md in zip(metrics, modes):
        if md not in ("max", "min"):
            raise error("mode", f"expected max or min, got {md!r}")
        expected = metric_direction(m)
        if expected is not None and md != expected:
            better = "higher" if expected == "max" else "lower"
            raise error("mode", f"{m} is better when {better}: use mode {expected}")
    if isinstance(metric, list) and algorithm != "optuna":
        raise error("metric", "several metrics (multi-objective) need algorithm optuna")
    if sec and sec.sampler is not None:
        why = sampler_problem(sec.sampler, algorithm, isinstance(metric, list))
        if why:
            raise error("sampler", why)
    if sec and sec.population_size is not None and (sec.sampler or "tpe") != "nsga2":
        raise error("population_size", "only sampler nsga2 has a population")
    num_samples = sec.num_samples if sec and sec.num_samples is not None else 1
    if algorithm == "grid" and sec and sec.num_samples not in (None, 1):
        raise error("num_samples", "algorithm grid runs every grid point once (repeat with seeds)")
    return SearchSettings(
        algorithm=algorithm, metric=metric, mode=mode, num_samples=num_samples,
        seed=sec.seed if sec and sec.seed is not None else 0,
        max_failures=sec.max_failures if sec else None,
        sampler=(sec.sampler if sec else None) or "tpe",
        population_size=sec.population_size if sec else None,
    )


def _scheduler(file: Origin, doc: SpaceFile, sections: Sections, search: SearchSettings,
               static_cfg: Config, params: list[Param], seeds: int) -> SchedulerSettings | None:
    sec = doc.scheduler
    if sec is None:
        return None

    def error(key: str | None, message: str) -> UserError:
        loc = ("scheduler", key) if key else ("scheduler",)
        return sections.origin(loc, file).error(loc, message)

    train = static_cfg.train
    problem = scheduler_problem(
        sec.type, algorithm=search.algorithm, multi_objective=search.multi_objective,
        keys=[p.key for p in params], conditional=[p.key for p in params if p.when],
        checkpoint_every=train.checkpoint_every, eval_every=train.eval_every, seeds=seeds,
    )
    if problem is not None:
        key, why = problem
        if key is not None:
            raise file.error(("space", key), why, f"space.{key}")
        raise error("type", why)
    evals = max(1, static_cfg.train.iterations // static_cfg.train.eval_every)
    max_t = sec.max_t if sec.max_t is not None else evals
    grace = sec.grace_period if sec.grace_period is not None else 1
    if grace > max_t:
        raise error("grace_period", f"exceeds max_t ({max_t}, in evaluations)")
    return SchedulerSettings(
        type=sec.type, max_t=max_t, grace_period=grace,
        reduction_factor=sec.reduction_factor or (3 if sec.type == "hyperband" else 2),
        min_samples_required=sec.min_samples_required or 3,
        perturbation_interval=sec.perturbation_interval or 1,
        quantile_fraction=sec.quantile_fraction if sec.quantile_fraction is not None else 0.25,
        resample_probability=sec.resample_probability if sec.resample_probability is not None else 0.25,
        synch=bool(sec.synch),
    )


def _baseline(file: Origin, raw: LineDict, params: list[Param]) -> dict[str, Any] | str | None:
    baseline = raw.get("baseline")
    if isinstance(baseline, str):
        return label_baseline(file, baseline, params)
    if not isinstance(baseline, dict):
        return baseline
    items = _items(baseline, Origin(file.file, raw, ("baseline",), "baseline."))
    by_key = {p.key: p for p in params}
    for item in items:
        param = by_key.get(item.key)
        if param is None:
            varied = ", ".join(by_key) or "none"
            raise item.error(f"{item.key} is not varied by the space, so no row can be told apart by it "
                             f"(varied: {varied})")
        if not param.discrete:
            raise item.error(f"{item.key} is drawn from {param.kind}: no planned row has a known value; "
                             "name a baseline by a key with listed values")
        if item.value not in param.args:
            raise item.error(f"{item.value!r} is not one of the space's values for {item.key}")
    return {item.key: item.value for item in items}


def _profiles(path: Path, raw: LineDict, file: Origin, profile: str | None) -> dict[str, Profile]:
    """Every profile of the file; the chosen one must be among them."""
    profiles_map = raw.get("profiles")
    profiles: dict[str, Profile] = {}
    if isinstance(profiles_map, dict):
        for pname, body in profiles_map.items():
            profiles[str(pname)] = _read_profile(path, raw, str(pname), body)
    if profile is not None and profile not in profiles:
        known = ", ".join(profiles) or "none defined"
        raise file.error(("profiles",), f"no profile {profile!r} (known: {known})")
    return profiles


def _sections(raw: LineDict, file: Origin, chosen: Profile | None,
              sections_override: dict[str, Any] | None) -> Sections:
    """The non-config sections: the file's, then the profile's, then the command line's."""
    sections = Sections()
    for key in PROFILE_SECTIONS:
        if key in raw:
            sections.merge(key, raw[key], lambda loc: file)
    if chosen is not None:
        for key, value in chosen.sections.tree.items():
            sections.merge(key, value, lambda loc, c=chosen: c.sections.origin(loc, file))
    command_line = Origin(None, None, (), "command line: ")
    for key, value in (sections_override or {}).items():
        sections.merge(key, value, lambda loc: command_line)
    return sections


def _name_and_paper(path: Path, doc: SpaceFile, file: Origin) -> str:
    """The search's folder-safe name; a ``paper`` must name a known table."""
    name = doc.name if doc.name is not None else path.stem
    if not re.match(NAME_PATTERN, name):
        raise file.error(("name",), f"expected a folder-safe name ([A-Za-z0-9_.-]), got {name!r}")
    if doc.paper is not None:
        tables = _paper_tables()
        group, table = doc.paper.split("/")
        if tables is not None and table not in (tables.get(group) or {}):
            known = [f"{g}/{t}" for g, ts in tables.items() if isinstance(ts, dict) for t in ts]
            raise file.error(("paper",), f"unknown table {doc.paper!r} (known: {', '.join(known)})")
    return name


def _static_items(path: Path, raw: LineDict, chosen: Profile | None, overrides: list[str] | None) -> list[Item]:
    """The fixed keys: the file's ``fixed``, the profile's, then ``--set``."""
    items = _items(raw.get("fixed"), Origin(path, raw, ("fixed",), "fixed."))
    items += chosen.items if chosen else []
    for text in overrides or []:
        key, value = parse_override(text)
        item = Item(key, value, Origin(None, None, (), "--set "), ())
        hint = check_key(key)
        if hint:
            raise item.error(hint)
        items.append(item)
    return items


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------


def load_space(path: str | Path, profile: str | None = None, overrides: list[str] | None = None,
               sections_override: dict[str, Any] | None = None) -> Space:
    """Parse and validate a search space file with a profile and ``--set`` overrides.

    Everything is checked here, before Ray starts: keys, types, ranges, distributions,
    conditions, algorithm/metric/scheduler compatibility, the number of trials and (for
    grid and random searches) the config of every trial. ``sections_override`` holds
    sections given on the command line (``{"search": {"num_samples": 8}}``), merged last.
    """
    path = Path(path)
    raw = load_mapping(path, "search space file", empty_ok=False)
    file = Origin(path, raw)

    profiles = _profiles(path, raw, file, profile)
    chosen = profiles.get(profile) if profile is not None else None

    # structure and ranges, with the profile's sections merged over the space's -------
    sections = _sections(raw, file, chosen, sections_override)
    doc = _schema_check({**raw, **sections.tree}, sections, file)
    name = _name_and_paper(path, doc, file)

    # the static config: base, fixed, profile, --set -----------------------------------
    base_tree, base_origin = _base(path, raw, file)
    items = _static_items(path, raw, chosen, overrides)

    params = _params(file, doc.space)
    seeds_given = doc.seeds
    baselines = doc.baselines
    res = doc.resources
    space = Space(
        path=path, name=name, description=(doc.description or "").strip(), paper=doc.paper,
        base_tree=plain(base_tree), static=[(i.key, i.value) for i in items], params=params,
        seeds=[0], baseline=None, baselines=baselines,
        search=SearchSettings(), scheduler=None,
        resources=Resources(res.workers, float(res.cpus_per_worker), float(res.gpus_per_worker)) if res else Resources(),
        max_concurrent_trials=doc.max_concurrent_trials or 1, profiles=list(profiles),
        profile=profile, overrides=list(overrides or []), raw=raw,
    )
    static_cfg = _static_check(space, items, base_origin)
    if isinstance(seeds_given, dict):  # adaptive replication over seeds 0..max-1
        space.seeds = list(range(seeds_given["max"]))
        space.adaptive_initial = seeds_given["initial"]
    else:
        space.seeds = list(seeds_given) if seeds_given is not None else [static_cfg.train.seed]
    space.baseline = _baseline(file, raw, params)
    check_conditions(file, space, params)
    space.search = _search(file, doc, sections, params, space.seeds, static_cfg, baselines)
    space.scheduler = _scheduler(file, doc, sections, space.search, static_cfg, params, len(space.seeds))
    if space.adaptive_initial is not None:
        if space.search.multi_objective:
            raise file.error(("seeds",), "adaptive replication compares one metric's intervals; "
                             "search.metric is a list (give a list of seeds, or one metric)")
        if space.scheduler is not None:
            raise file.error(("scheduler",), "adaptive replication decides on finished seeds; a scheduler "
                             "would stop them early (drop the scheduler, or give a list of seeds)")
    space.tracking = normalize_tracking(doc.tracking)
    space.checkpoints = CheckpointPolicy(**doc.checkpoints.model_dump()) if doc.checkpoints else None
    space.cli_sections = plain(sections_override or {})

    check_values(file, space, params, baselines)
    return space


__all__ = ["MAX_KEYS", "check_key", "load_space"]
