"""The experiment config as pydantic models: every key, its default, its docstring, its range.

Contract:

* Each section is a :class:`Section` (``extra="forbid"``, ``validate_assignment=True``,
  ``allow_inf_nan=False``): an unknown key, a wrong type, NaN/inf or a value out of
  range is a ``ValidationError`` whose ``loc`` is the dotted key.
* Types are strict where YAML is ambiguous: ``1`` is not ``true``, ``2.0`` is not an
  integer, numbers are not strings; a float key takes an int or a numeric string
  (YAML 1.1 reads ``1e-3`` as a string).
* Names are checked against their registries (tasks, metrics, decoders, timm backbones;
  :mod:`mtlsearch.config.registries`) only while validating, never at import.
* A rule that spans keys raises :func:`key_error`, which names the key to blame, so
  the error's location is always a dotted config key (see ``load.validation_error``).

Defaults live here and nowhere else; YAML files and ``--set`` only override them.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    model_validator,
)

from mtlsearch.config import registries
from mtlsearch.config.fields import (
    IMAGE_SIDE_MAX,
    Bool,
    DecoderName,
    Float,
    Fraction,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    Seed,
    Side,
    SideOrZero,
    Str,
    TaskName,
    backbone_problem,
    check_backbone,
    check_backbone_kwargs,
    check_file,
    fail,
    float_from_text,
    key_error,
    near_below_far,
    unique,
)


class Section(BaseModel):
    """Base of every config section: unknown keys, NaN/inf and bad types refused."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )


class SynthConfig(Section):
    """How to generate SynthRooms when ``data.root`` is empty."""

    scenes: Annotated[int, Strict(), Field(gt=0, le=100_000)] = 24
    views: Annotated[int, Strict(), Field(gt=0, le=256)] = 4
    size: tuple[
        Annotated[int, Strict(), Field(ge=8, le=IMAGE_SIDE_MAX)],
        Annotated[int, Strict(), Field(ge=8, le=IMAGE_SIDE_MAX)],
    ] = (96, 128)
    """Image size (height, width), 8 to 4096 pixels per side."""
    seed: Seed = 0
    val_fraction: Annotated[float, Strict(), Field(gt=0, lt=1), BeforeValidator(float_from_text)] = 0.25
    """Fraction of the rooms in the validation split, in (0, 1)."""
    cache_dir: Str = ".cache/synthrooms"
    extra_views: Annotated[int, Strict(), Field(ge=0, le=256)] = 0
    """Extra video frames per room, labelled with depth only and listed in
    ``gt_sets/extra.txt`` (train with ``data.extra_frames: true``); 0 = none (the
    dataset is then byte-identical to one generated without this option)."""


class DataConfig(Section):
    """Dataset, views per sample, augmentation and loading."""

    layout: Literal["synthrooms", "nyud", "pascal"] = "synthrooms"
    root: Str = ""
    """Dataset folder. Empty with ``layout: synthrooms``: generate from ``data.synth``."""
    synth: SynthConfig = Field(default_factory=SynthConfig)
    fraction: Fraction = 1.0
    """Fraction of the training split, in (0, 1]; nested, seeded subsets drawn by scene."""
    fraction_seed: Seed = 0
    num_views: Annotated[int, Strict(), Field(gt=0, le=64)] = 1
    """Views per training sample (reference + nearest neighbours of the same scene)."""
    source_tasks: Annotated[list[TaskName], AfterValidator(unique)] = Field(default_factory=list)
    """Tasks labelled on source (non-reference) views; empty = all. ``[depth]`` mimics
    NYUv2's extra video frames, which carry depth only."""
    crop_size: tuple[Side, Side] = (96, 128)
    augment: Bool = True
    scale_range: tuple[PosFloat, PosFloat] = (0.75, 1.25)
    """Random scale factors [low, high], 0 < low <= high."""
    flip: Bool = True
    photometric: Bool = True
    num_workers: Annotated[int, Strict(), Field(ge=0, le=256)] = 2
    val_size: tuple[SideOrZero, SideOrZero] = (0, 0)
    """Validation views are padded at the bottom/right to this size (ignore values, K
    unchanged) so batches collate; metrics see only real pixels. (0, 0): 512x512 for
    PASCAL, else the first validation image's size rounded up to a multiple of 32."""
    max_val_images: NonNegInt = 0
    """Evaluate on at most this many validation images (0 = the whole split)."""
    extra_frames: Bool = False
    """Draw source views also from the dataset's extra frames (``gt_sets/extra.txt``:
    video frames with poses and only some labels, e.g. NYUv2's raw frames with depth);
    only those of the training scenes. Needs ``cameras/`` and >= 2 views per sample."""
    supervise_all_views: Annotated[bool | None, Strict()] = None
    """Every view of a sample takes a turn as the reference, so every view with a label
    trains the heads (and renders) for that task; missing labels add no loss. ``null``:
    on exactly when ``extra_frames`` is on. Off: only view 0's labels train the heads.
    Each step then runs the model on all V turns (V times the compute and memory)."""
    single_view_duplication: Bool = False
    """Without ``cameras/``, let multi-view parts (cross-view module, cross-view
    consistency) pair each view with itself at the identity pose (no geometry: the cost
    volume is uninformative and Eq. 3 repeats Eq. 2). Off: such a config is refused."""

    @model_validator(mode="after")
    def _ranges(self) -> DataConfig:
        lo, hi = self.scale_range
        if lo > hi:
            raise key_error("scale_range", f"need 0 < low <= high, got [{lo}, {hi}]")
        if (self.val_size[0] == 0) != (self.val_size[1] == 0):
            raise key_error(
                "val_size", f"give both sides, or [0, 0] for automatic, got {list(self.val_size)}"
            )
        return self


class ModelConfig(Section):
    """Backbone, decoder and output initialisation."""

    backbone: Annotated[str, Strict(), AfterValidator(check_backbone)] = "resnet18"
    """Any timm model name that supports ``features_only``."""
    pretrained_path: Annotated[str, Strict(), AfterValidator(check_file)] = ""
    """Local weights file (never downloaded). Empty: random initialisation."""
    weights: Annotated[str, Strict(), AfterValidator(check_file)] = ""
    """A full-model state_dict (ours: ``.safetensors`` or a torch file), loaded strictly
    after ``pretrained_path``, e.g. an official InvPT / MTI-Net checkpoint converted by
    ``mtlsearch weights convert``. The regularizer and aux heads may be absent from it
    (they start fresh). Empty: none."""
    decoder: DecoderName = "hps"  # type: ignore[assignment]
    """A registered decoder (``mtlsearch.models.decoders``)."""
    decoder_width: Annotated[int, Strict(), Field(gt=0, le=4096)] = 64
    """hps/fpn: width of the fused map and heads. invpt: the embedding width D of the
    preliminary decoders (512 in the paper; the transformer stages use D + D/8). mtinet:
    unused (its widths are the backbone's)."""
    decoder_stride: Literal[4, 8] = 4
    """Scale of the decoder's fused feature map (the heads' and regularizer's input):
    1/4 or 1/8 of the input size."""
    depth_init: PosFloat = 2.5
    """Initial depth prediction in metres (bias of the depth outputs' last layer), so
    training starts from a typical indoor depth instead of 0."""
    out_indices: Annotated[list[NonNegInt], Field(min_length=1), AfterValidator(unique)] = Field(
        default_factory=lambda: [1, 2, 3, 4]
    )
    """Backbone feature levels (timm ``out_indices``). On single-scale backbones (ViTs) they
    index transformer blocks; there the default [1, 2, 3, 4] is replaced by four evenly
    spaced blocks ending at the last one (DPT-style, e.g. [2, 5, 8, 11] for 12 blocks)."""
    shared_features: Literal["encoder", "decoder"] = "encoder"
    """invpt/mtinet: the shared map f that the regularizer and the aux heads read, brought
    to the render scale: ``encoder`` the shared encoder's output (InvPT: the last ViT
    block's map; MTI-Net: the HRNet levels concatenated), ``decoder`` the decoder's final
    task features concatenated. hps/fpn always use their fused map."""
    hrnet_fuse_upsample: Literal["bilinear", "nearest"] = "bilinear"
    """HRNet backbones: how the fuse layers upsample a coarser branch to a finer one.
    ``bilinear`` (align_corners=False): the segmentation HRNet that MTI-Net's official code
    uses (it runs ImageNet weights this way too); ``nearest``: timm's classification HRNet,
    whose ImageNet weights were trained with it (and models trained here before this key)."""
    mtinet_fpm_softmax: Literal["channel_groups", "tasks"] = "channel_groups"
    """mtinet: the axis of the softmax that makes the feature propagation module's mask from
    the N tasks' concatenated features (N x c channels, task blocks in task order).
    ``channel_groups``: the official code, a softmax over each group of N consecutive
    channels (inside one task's block when N divides c, e.g. NYUD's 4 tasks; with 5 tasks
    on HRNet-W48 some groups straddle two tasks); ``tasks``: the paper's text, for each
    channel and pixel a softmax across the N tasks."""

    backbone_kwargs: Annotated[dict[Str, Any], AfterValidator(check_backbone_kwargs)] = Field(
        default_factory=dict
    )
    """Extra keyword arguments for ``timm.create_model``: widths, depth, heads, drop path,
    e.g. ``{embed_dim: 128, depth: 24, num_heads: 2, drop_path_rate: 0.15}`` (the paper
    profiles set InvPT's ``drop_path_rate: 0.15``). For invpt, ``img_size`` defaults to
    ``data.crop_size`` padded to a multiple of 64: the position embedding is learnt on that
    grid. The keys mtlsearch sets itself (``pretrained``, ``features_only``, ``out_indices``,
    ``dynamic_img_size``...) are refused."""

    @model_validator(mode="after")
    def _feature_levels(self) -> ModelConfig:
        if self.backbone_kwargs:
            kwargs = json.dumps(self.backbone_kwargs, sort_keys=True, default=str)
            problem = backbone_problem(self.backbone, tuple(self.out_indices), kwargs)
            if problem:
                where = f"(with out_indices {list(self.out_indices)})"
                raise key_error("backbone_kwargs", f"{problem}, got {self.backbone_kwargs} {where}")
            return self
        problem = registries.out_indices_problem(self.backbone, tuple(self.out_indices))
        if problem:
            raise key_error("out_indices", f"{problem}, got {list(self.out_indices)}")
        return self


class AlphaConfig(Section):
    """The regularizer's weight alpha over training."""

    schedule: Literal["linear_ramp", "constant", "cosine_ramp", "step"] = "linear_ramp"
    max: NonNegFloat = 4.0
    ramp_fraction: Annotated[float, Strict(), Field(ge=0, le=1), BeforeValidator(float_from_text)] = 0.5
    """Fraction of ``train.iterations`` over which alpha rises to ``max``, in [0, 1]."""
    per_task: dict[TaskName, NonNegFloat] = Field(default_factory=dict)
    """alpha_t of Eq. 2: per-task overrides of ``max`` (same schedule), e.g. ``{depth: 2.0}``;
    tasks not named use ``max``."""


class RegCrossViewConfig(Section):
    """The regularizer's cross-view consistency term."""

    enabled: Bool = False
    weight_scale: NonNegFloat = 1.0
    """alpha' = weight_scale * alpha (the paper uses alpha' = alpha)."""


def _check_reg_tasks(value: Any) -> Any:
    if value == "all":
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        known = registries.task_names()
        for task in value:
            if task not in known:
                raise fail("unknown_name", f"unknown task {task!r} (known: {', '.join(known)})")
        return unique(list(value))
    raise fail("reg_tasks", f"expected 'all' or a non-empty list of tasks, got {value!r}")


RegTasks = Annotated[
    Any,
    BeforeValidator(_check_reg_tasks),
    Field(json_schema_extra={"anyOf": [{"const": "all"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}),
]


class RegularizerConfig(Section):
    """The 3D-aware regularizer (tri-plane, neural task fields, volume rendering)."""

    enabled: Bool = False
    tasks: RegTasks = "all"
    """Rendered tasks: ``all`` or a non-empty list of the config's tasks."""
    triplane_width: PosInt = 64
    hidden: PosInt = 64
    dropout: Annotated[float, Strict(), Field(ge=0, lt=1), BeforeValidator(float_from_text)] = 0.15
    samples_per_ray: PosInt = 32
    near: Float = -1.0
    far: Float = 1.0
    """Ray extent along z inside the normalised [-1, 1]^3 tri-plane box (near < far)."""
    ray_mode: Literal["orthographic", "perspective"] = "orthographic"
    """``orthographic``: the paper's rays, parallel, K ignored; single-view renders only.
    ``perspective``: pinhole rays through the render pixels with the view's K, samples at
    metric z-depths in [box_center_depth + box_size * near, box_center_depth + box_size *
    far]; cross-view renders are exact (needed by ``cross_view.enabled``)."""
    perspective_box: Literal["camera", "frustum"] = "camera"
    """Perspective mode's tri-plane coordinates in the input view's camera frame:
    ``camera`` = the metric box (box_size, box_center_depth); ``frustum`` = normalised
    pixel coordinates and z-depth (e_xy stays aligned with the image at every depth)."""
    render_task_weights: Bool = True
    """Multiply the render (and cross-view) losses by the task weight w_t as well as
    alpha_t (on), or by alpha_t only (off; Eq. 2 read literally)."""
    box_size: PosFloat = 5.0
    """Half-extent of the tri-plane box in metres: box point b maps to camera-frame metres
    p = box_size * b + (0, 0, box_center_depth). Used by expected depth and perspective rays."""
    box_center_depth: Float = 5.0
    """Camera-frame depth (metres) of the box centre (default: the box spans z in 0..10 m)."""
    plane_scale: PosFloat = 1.0
    """Tri-plane resolution relative to the decoder's feature map (bilinear resize)."""
    density_activation: Literal["softplus", "relu", "exp"] = "softplus"
    shared_density: Bool = False
    render_scale: Fraction = 0.125
    """Render size relative to the input, in (0, 1]."""
    depth_mode: Literal["raw", "expected"] = "raw"
    label_mode: Literal["downsample", "upsample"] = "downsample"
    align_corners: Bool = False
    chunk_rays: PosInt = 8192
    alpha: AlphaConfig = Field(default_factory=AlphaConfig)
    cross_view: RegCrossViewConfig = Field(default_factory=RegCrossViewConfig)

    @model_validator(mode="after")
    def _ray_extent(self) -> RegularizerConfig:
        near_below_far("regularizer", self.near, self.far)
        return self


class LossConfig(Section):
    """Options of the task losses (their weights are ``tasks``)."""

    edge_pos_weight: Annotated[float, Strict(), Field(gt=0, lt=1), BeforeValidator(float_from_text)] = 0.95
    """Positive weight w of the balanced edge BCE (negatives weigh 1 - w), in (0, 1):
    0.95 in InvPT / MTI-Net's PASCAL setting, 0.8 in ATRC's NYUD setting."""


class AuxHeadsConfig(Section):
    """Table 4 baseline: extra heads like the task heads, weighted by alpha."""

    enabled: Bool = False


class CvmConfig(Section):
    """The cross-view module (spatial encoder, multi-view transformer, cost volume)."""

    enabled: Bool = False
    depth_planes: Annotated[int, Strict(), Field(gt=0, le=4096)] = 128
    near: PosFloat = 0.5
    far: PosFloat = 10.0
    """Cost-volume depth range in metres, 0 < near < far."""
    num_views: Annotated[int, Strict(), Field(gt=0, le=64)] = 2
    layers: NonNegInt = 6
    width: PosInt = 128
    window_splits: PosInt = 2
    heads: PosInt = 4
    chunk_planes: PosInt = 32
    use_cost_volume: Bool = True
    use_features: Bool = True

    @model_validator(mode="after")
    def _depth_range(self) -> CvmConfig:
        near_below_far("cvm", self.near, self.far)
        return self


class TrainConfig(Section):
    """Optimisation, evaluation and logging cadence."""

    iterations: PosInt = 200
    batch_size: PosInt = 4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 1e-6
    momentum: NonNegFloat = 0.9
    fused: Bool = True
    """The optimizer's fused kernel: one pass over all parameters per step (a 4.6x faster
    Adam step for resnet18 on one CPU thread); rounds differently from the per-tensor loop
    in the last bits, so set false to repeat a run trained that way."""
    poly_power: NonNegFloat = 0.9
    eval_every: PosInt = 50
    checkpoint_every: NonNegInt = 0
    """Checkpoint every N iterations (0 = at every evaluation)."""
    log_every: PosInt = 10
    seed: Seed = 0
    grad_clip: NonNegFloat = 0.0
    """Clip the gradient norm to this value (0 = no clipping)."""
    intermediate_supervision: Bool = True
    """Deep supervision of invpt/mtinet: every intermediate prediction is a loss term
    (``loss_inter_<task>``) weighted like its task, as both papers train."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training step's arithmetic: ``fp32``, or ``bf16`` / ``fp16`` through torch.autocast
    (fp16 with a GradScaler; refused where torch cannot run it, and very slow on CPU, whose
    float16 convolution backward is a fallback: use bf16 there). Weights, optimizer state,
    losses, metrics, evaluation and the regularizer's ray geometry and compositing stay
    float32 (``mtlsearch.precision``)."""
    channels_last: Bool = False
    """Channels-last (NHWC) weights and input images: often faster for convolutional
    backbones (oneDNN on CPU, tensor cores on GPU); no effect on a ViT's linear layers."""
    compile: Bool = False
    """``torch.compile`` the model (in place, after DDP wrapping): a slow first step while it
    compiles (needs a C++ compiler on CPU), then possibly faster steps."""


def _check_baselines(value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    for task, metrics in value.items():
        known = registries.task_metrics(task)
        for name in metrics:
            if name not in known:
                raise key_error(
                    f"{task}.{name}",
                    f"{task} reports no metric {name!r} (known: {', '.join(known)})",
                )
    return value


class EvalConfig(Section):
    """What is scored, how, and the single-task references of delta_m."""

    outputs: Annotated[
        list[Literal["heads", "renders", "average"]], Field(min_length=1), AfterValidator(unique)
    ] = Field(default_factory=lambda: ["heads"])
    """What to score: ``heads``, ``renders`` (regularizer) and/or ``average`` (Table 5)."""
    multiview: Bool = False
    """Also score with multi-view input (single-view is always scored)."""
    edge_max_dist: PosFloat = 0.011
    """Boundary matching tolerance as a fraction of the unpadded image's diagonal (SEISM:
    0.011 NYUD, 0.0075 PASCAL)."""
    edge_thresholds: Annotated[int, Strict(), Field(gt=0, le=1000)] = 21
    """Number T of boundary thresholds, linspace(1/(T+1), 1 - 1/(T+1), T). 99 is the
    0.01..0.99 grid MTL-PyTorch / ATRC / InvPT pass to SEISM; SEISM's own 101-point grid
    adds 0 and 1, which select every pixel or none and never give the optimum, so 99
    reproduces it. 21 (default) is a CPU-friendly approximation (ODS can be slightly lower)."""
    miou_classes: Literal["all", "present"] = "all"
    """Classes semseg/parts mIoU averages over: ``all`` (the MTI-Net/InvPT evaluators: every
    class of the task, one absent from the split's labels and predictions scoring IoU 0) or
    ``present`` (only classes with a non-zero union; higher when a split lacks classes)."""
    depth_clamp: Bool = True
    """Clamp depth predictions to 1e-9 before scoring, as the MTI-Net/InvPT evaluators do;
    false scores raw (possibly negative) predictions (``log_rmse`` floors them anyway)."""
    sal_protocol: Literal["atrc", "invpt"] = "atrc"
    """Saliency maxF: ``atrc`` thresholds the probability; ``invpt`` passes it through a
    second sigmoid first, as InvPT's evaluator does (whose numbers 3DMTL's PASCAL table copies)."""
    baselines: Annotated[dict[TaskName, dict[Str, Float]], AfterValidator(_check_baselines)] = Field(
        default_factory=dict
    )
    """Single-task reference metrics per task, e.g. ``{semseg: {miou: 40.0}}``, for delta_m."""


class Config(Section):
    """The whole experiment config (``mtlsearch config schema`` writes its JSON Schema)."""

    name: Str = "run"
    tasks: Annotated[dict[TaskName, NonNegFloat], Field(min_length=1)] = Field(
        default_factory=lambda: {"semseg": 1.0, "depth": 1.0, "normals": 10.0, "edge": 50.0}
    )
    """Task names and their loss weights (the papers' NYUD weights: semseg 1, depth 1, normals 10, edge 50)."""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    regularizer: RegularizerConfig = Field(default_factory=RegularizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    aux_heads: AuxHeadsConfig = Field(default_factory=AuxHeadsConfig)
    cvm: CvmConfig = Field(default_factory=CvmConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _across_sections(self) -> Config:
        tasks = list(self.tasks)
        reg = self.regularizer.tasks
        if isinstance(reg, list):
            for task in reg:
                if task not in tasks:
                    raise key_error(
                        "regularizer.tasks",
                        f"{task!r} is not one of the config's tasks ({', '.join(tasks)})",
                    )
        for task in self.data.source_tasks:
            if task not in tasks:
                raise key_error(
                    "data.source_tasks",
                    f"{task!r} is not one of the config's tasks ({', '.join(tasks)})",
                )
        if self.eval.baselines:
            missing = [t for t in tasks if t not in self.eval.baselines]
            if missing:
                raise key_error(
                    "eval.baselines",
                    f"no single-task baseline for {', '.join(missing)}: delta_m averages over "
                    "every task, so give one for each (or none)",
                )
        for task in self.regularizer.alpha.per_task:
            if task not in tasks:
                raise key_error(
                    "regularizer.alpha.per_task",
                    f"{task!r} is not one of the config's tasks ({', '.join(tasks)})",
                )
        reg_cfg = self.regularizer
        if reg_cfg.enabled and reg_cfg.cross_view.enabled:
            if reg_cfg.ray_mode != "perspective":
                raise key_error(
                    "regularizer.ray_mode",
                    "cross_view.enabled needs perspective (orthographic rays ignore K, so "
                    "another view's render would be geometrically wrong)",
                )
            if registries.renders_ray_depth(self.rendered_tasks) and reg_cfg.depth_mode != "expected":
                raise key_error(
                    "regularizer.depth_mode",
                    "cross_view.enabled renders depth in the second view's frame: set "
                    "expected (raw is a value of the input view)",
                )
        if self.cvm.enabled and self.cvm.num_views < 2:
            raise key_error(
                "cvm.num_views", f"the cross-view module needs >= 2 views, got {self.cvm.num_views}"
            )
        if self.data.layout != "synthrooms" and not self.data.root:
            raise key_error("data.root", f"required for layout {self.data.layout!r}")
        return self

    @property
    def task_names(self) -> list[str]:
        """The configured tasks, in the config's order."""
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
        """The config as nested plain dicts (tuples stay tuples)."""
        return self.model_dump()

    def flat(self) -> dict[str, Any]:
        """Dotted-key view of the config (``{"regularizer.alpha.max": 4.0, ...}``)."""
        from mtlsearch.config.load import flatten

        return flatten(self.to_dict())


__all__ = [
    "AlphaConfig",
    "AuxHeadsConfig",
    "Config",
    "CvmConfig",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "RegCrossViewConfig",
    "RegularizerConfig",
    "Section",
    "SynthConfig",
    "TrainConfig",
    "key_error",
]
