"""The typed experiment config: the single source of truth for every default.

YAML files and ``--set key=value`` overrides only change fields declared here.
Unknown keys and values of the wrong type raise :class:`UserError` naming the
dotted key, so a typo never silently trains the wrong model.

Entry point: :func:`load_config`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mtlsearch.errors import UserError

ALL_TASKS = ("semseg", "depth", "normals", "edge", "sal", "parts")


@dataclass
class SynthConfig:
    """How to generate SynthRooms when ``data.root`` is empty."""

    scenes: int = 24
    views: int = 4
    size: tuple[int, int] = (96, 128)
    seed: int = 0
    val_fraction: float = 0.25
    cache_dir: str = ".cache/synthrooms"


@dataclass
class DataConfig:
    layout: Literal["synthrooms", "nyud", "pascal"] = "synthrooms"
    root: str = ""
    """Dataset folder. Empty with ``layout: synthrooms``: generate from ``data.synth``."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    fraction: float = 1.0
    """Fraction of the training split, in (0, 1]; nested, seeded subsets drawn by scene."""
    fraction_seed: int = 0
    num_views: int = 1
    """Views per training sample (reference + nearest neighbours of the same scene)."""
    source_tasks: list[str] = field(default_factory=list)
    """Tasks labelled on source (non-reference) views; empty = all. ``[depth]`` mimics
    NYUv2's extra video frames, which carry depth only."""
    crop_size: tuple[int, int] = (96, 128)
    augment: bool = True
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    photometric: bool = True
    num_workers: int = 2
    val_size: tuple[int, int] = (0, 0)
    """Validation views are padded at the bottom/right to this size (ignore values, K
    unchanged) so batches collate; metrics see only real pixels. (0, 0): 512x512 for
    PASCAL, else the first validation image's size rounded up to a multiple of 32."""
    max_val_images: int = 0
    """Evaluate on at most this many validation images (0 = the whole split)."""


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    """Any timm model name that supports ``features_only``."""
    pretrained_path: str = ""
    """Local weights file (never downloaded). Empty: random initialisation."""
    decoder: str = "hps"
    decoder_width: int = 64
    decoder_stride: Literal[4, 8] = 4
    """Scale of the decoder's fused feature map (the heads' and regularizer's input):
    1/4 or 1/8 of the input size."""
    depth_init: float = 2.5
    """Initial depth prediction in metres (bias of the depth outputs' last layer), so
    training starts from a typical indoor depth instead of 0."""
    out_indices: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    """Backbone feature levels (timm ``out_indices``). On single-scale backbones (ViTs) they
    index transformer blocks; there the default [1, 2, 3, 4] is replaced by four evenly
    spaced blocks ending at the last one (DPT-style, e.g. [2, 5, 8, 11] for 12 blocks)."""


@dataclass
class AlphaConfig:
    schedule: Literal["linear_ramp", "constant", "cosine_ramp", "step"] = "linear_ramp"
    max: float = 4.0
    ramp_fraction: float = 0.5
    """Fraction of ``train.iterations`` over which alpha rises to ``max``."""


@dataclass
class RegCrossViewConfig:
    enabled: bool = False
    weight_scale: float = 1.0
    """alpha' = weight_scale * alpha (the paper uses alpha' = alpha)."""


@dataclass
class RegularizerConfig:
    """The 3D-aware regularizer (tri-plane, neural task fields, volume rendering)."""

    enabled: bool = False
    tasks: str | list[str] = "all"
    triplane_width: int = 64
    hidden: int = 64
    dropout: float = 0.15
    samples_per_ray: int = 32
    near: float = -1.0
    far: float = 1.0
    """Ray extent along z inside the normalised [-1, 1]^3 tri-plane box."""
    box_size: float = 5.0
    """Half-extent of the tri-plane box in metres: box point b maps to camera-frame metres
    p = box_size * b + (0, 0, box_center_depth). Used by cross-view poses and expected depth."""
    box_center_depth: float = 5.0
    """Camera-frame depth (metres) of the box centre (default: the box spans z in 0..10 m)."""
    plane_scale: float = 1.0
    """Tri-plane resolution relative to the decoder's feature map (bilinear resize)."""
    density_activation: Literal["softplus", "relu", "exp"] = "softplus"
    shared_density: bool = False
    render_scale: float = 0.125
    depth_mode: Literal["raw", "expected"] = "raw"
    label_mode: Literal["downsample", "upsample"] = "downsample"
    align_corners: bool = False
    chunk_rays: int = 8192
    alpha: AlphaConfig = field(default_factory=AlphaConfig)
    cross_view: RegCrossViewConfig = field(default_factory=RegCrossViewConfig)


@dataclass
class AuxHeadsConfig:
    """Table 4 baseline: extra heads like the task heads, weighted by alpha."""

    enabled: bool = False


@dataclass
class CvmConfig:
    """The cross-view module (spatial encoder, multi-view transformer, cost volume)."""

    enabled: bool = False
    depth_planes: int = 128
    near: float = 0.5
    far: float = 10.0
    num_views: int = 2
    layers: int = 6
    width: int = 128
    window_splits: int = 2
    heads: int = 4
    chunk_planes: int = 32
    use_cost_volume: bool = True
    use_features: bool = True


@dataclass
class TrainConfig:
    iterations: int = 200
    batch_size: int = 4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    momentum: float = 0.9
    poly_power: float = 0.9
    eval_every: int = 50
    checkpoint_every: int = 0
    """Checkpoint every N iterations (0 = at every evaluation)."""
    log_every: int = 10
    seed: int = 0
    grad_clip: float = 0.0


@dataclass
class EvalConfig:
    outputs: list[str] = field(default_factory=lambda: ["heads"])
    """What to score: ``heads``, ``renders`` (regularizer) and/or ``average`` (Table 5)."""
    multiview: bool = False
    """Also score with multi-view input (single-view is always scored)."""
    edge_max_dist: float = 0.011
    edge_thresholds: int = 21
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    """Single-task reference metrics per task, e.g. ``{semseg: {miou: 40.0}}``, for delta_m."""


@dataclass
class Config:
    name: str = "run"
    tasks: dict[str, float] = field(
        default_factory=lambda: {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}
    )
    """Task names and their loss weights (DESIGN: NYUD semseg 1, depth 1, normals 10, edge 50)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    aux_heads: AuxHeadsConfig = field(default_factory=AuxHeadsConfig)
    cvm: CvmConfig = field(default_factory=CvmConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    @property
    def rendered_tasks(self) -> list[str]:
        """Tasks the regularizer renders (empty when it is disabled)."""
        if not self.regularizer.enabled:
            return []
        chosen = self.regularizer.tasks
        if chosen == "all":
            return self.task_names
        return [t for t in self.task_names if t in chosen]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted-key view of the config (``{"regularizer.alpha.max": 4.0, ...}``)."""
        return flatten(self.to_dict())


# ---------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; leaves (incl. the tasks dict) kept whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("tasks", "baselines"):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML (``32``, ``true``, ``[a, b]``)."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(value, str):
            value = _float_or_str(value) if _looks_numeric(value) else value
    except yaml.YAMLError as err:
        raise UserError(f"override {key}: cannot parse value {raw!r}: {err}") from None
    return key, value


def _looks_numeric(text: str) -> bool:
    return any(c.isdigit() for c in text) and isinstance(_float_or_str(text), float)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(
    source: str | Path | dict[str, Any] | Config | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Build a :class:`Config` from defaults, a YAML file or dict, then dotted overrides.

    ``overrides`` is a list of ``"key=value"`` strings (CLI ``--set``) or a mapping
    of dotted keys to values (search spaces). Raises :class:`UserError` naming the
    key for unknown keys and wrongly typed values.
    """
    if isinstance(source, Config):
        tree = source.to_dict()
    elif source is None:
        tree = {}
    elif isinstance(source, dict):
        tree = _deep_copy(source)
    else:
        tree = read_yaml(source)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in items:
        set_dotted(tree, key, value)
    try:
        cfg = _build(Config, tree, "")
        _check(cfg)
    except UserError as err:
        if isinstance(source, (str, Path)):
            raise UserError(f"{source}: {err}") from None
        raise
    return cfg


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree


def _build(cls: type, tree: Any, prefix: str) -> Any:
    if not isinstance(tree, dict):
        raise UserError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {tree!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in tree:
        if key not in known:
            raise UserError(
                f"unknown config key {prefix}{key!s} (known: {', '.join(sorted(known))})"
            )
    kwargs = {}
    for f in fields(cls):
        if f.name in tree:
            kwargs[f.name] = _coerce(hints[f.name], tree[f.name], prefix + f.name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the field's type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(option, value, key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(f"{key}: {value!r} does not fit {_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise UserError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _float_or_str(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is type(None):
        if value is not None:
            raise UserError(f"{key}: expected null, got {value!r}")
        return None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise UserError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return {
            _coerce(args[0], k, f"{key}"): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()
        }
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _float_or_str(text: str) -> float | str:
    """YAML 1.1 reads ``1e-3`` as a string; accept it where a number is expected."""
    try:
        return float(text)
    except ValueError:
        return text


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(cfg: Config) -> None:
    """Cross-field rules that types alone cannot express."""
    if not cfg.tasks:
        raise UserError("tasks: at least one task is required")
    for task, weight in cfg.tasks.items():
        if task not in ALL_TASKS:
            raise UserError(f"tasks.{task}: unknown task (known: {', '.join(ALL_TASKS)})")
        if weight < 0:
            raise UserError(f"tasks.{task}: loss weight must be >= 0, got {weight}")
    reg = cfg.regularizer
    if isinstance(reg.tasks, str) and reg.tasks != "all":
        raise UserError(f"regularizer.tasks: expected 'all' or a list of tasks, got {reg.tasks!r}")
    if isinstance(reg.tasks, list):
        for task in reg.tasks:
            if task not in cfg.tasks:
                raise UserError(f"regularizer.tasks: {task!r} is not one of the config's tasks")
    positive = {
        "regularizer.triplane_width": reg.triplane_width,
        "regularizer.hidden": reg.hidden,
        "regularizer.samples_per_ray": reg.samples_per_ray,
        "regularizer.chunk_rays": reg.chunk_rays,
        "cvm.depth_planes": cfg.cvm.depth_planes,
        "cvm.width": cfg.cvm.width,
        "cvm.chunk_planes": cfg.cvm.chunk_planes,
        "train.iterations": cfg.train.iterations,
        "train.batch_size": cfg.train.batch_size,
        "train.eval_every": cfg.train.eval_every,
        "data.num_views": cfg.data.num_views,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"{key}: must be positive, got {value}")
    if not 0.0 < cfg.data.fraction <= 1.0:
        raise UserError(f"data.fraction: must be in (0, 1], got {cfg.data.fraction}")
    if not 0.0 < reg.render_scale <= 1.0:
        raise UserError(f"regularizer.render_scale: must be in (0, 1], got {reg.render_scale}")
    if reg.box_size <= 0 or reg.plane_scale <= 0:
        raise UserError(
            f"regularizer.box_size / regularizer.plane_scale: must be positive, "
            f"got {reg.box_size}, {reg.plane_scale}"
        )
    if not 0.0 <= reg.dropout < 1.0:
        raise UserError(f"regularizer.dropout: must be in [0, 1), got {reg.dropout}")
    if not 0.0 <= reg.alpha.ramp_fraction <= 1.0:
        raise UserError(f"regularizer.alpha.ramp_fraction: must be in [0, 1], got {reg.alpha.ramp_fraction}")
    if reg.near >= reg.far:
        raise UserError(f"regularizer.near ({reg.near}) must be below regularizer.far ({reg.far})")
    if not 0.0 < cfg.cvm.near < cfg.cvm.far:
        raise UserError(f"cvm.near/cvm.far: need 0 < near < far, got {cfg.cvm.near}, {cfg.cvm.far}")
    if cfg.cvm.enabled and cfg.cvm.num_views < 2:
        raise UserError(f"cvm.num_views: the cross-view module needs >= 2 views, got {cfg.cvm.num_views}")
    for out in cfg.eval.outputs:
        if out not in ("heads", "renders", "average"):
            raise UserError(f"eval.outputs: {out!r} is not one of heads, renders, average")
    if cfg.data.layout != "synthrooms" and not cfg.data.root:
        raise UserError(f"data.root: required for layout {cfg.data.layout!r}")


def config_fields() -> dict[str, Any]:
    """Every dotted key with its default, for docs and validation of search spaces."""
    return Config().flat()


__all__ = [
    "ALL_TASKS",
    "Config",
    "load_config",
    "parse_override",
    "read_yaml",
    "set_dotted",
    "flatten",
    "config_fields",
]
