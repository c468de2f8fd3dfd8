"""Official MTI-Net checkpoints (SimonVandenhende/Multi-Task-Learning-PyTorch: ``MTINet``
over its segmentation ``HighResolutionNet``, ``HighResolutionHead`` heads) converted to the
state_dict of our :class:`~mtlsearch.models.mtl.MultiTaskModel` with ``model.decoder:
mtinet`` over the timm HRNet of the same layout.

Every official tensor has one counterpart of the same shape (nothing is dropped), named by
these rules (``<t>``, ``<a>``: task names, ``human_parts`` becoming ``parts``):

====================================================  ==============================================
official                                              ours
====================================================  ==============================================
``backbone.<path>``                                   ``backbone.body.<path>`` (timm's names)
``scale_<i>.refinement.<t>.<b>.<rest>``               ``decoder.initial.<i>.refine.<t>.<b>.<rest>``
``scale_<i>.decoders.<t>.<p>``                        ``decoder.initial.<i>.predict.<t>.<p>``
``fpm_scale_<s>.non_linear.<rest>``                   ``decoder.propagation.<s-1>.masks.<rest>``
``fpm_scale_<s>.dimensionality_reduction.<rest>``     ``decoder.propagation.<s-1>.reduce.<rest>``
``fpm_scale_<s>.se.<t>.squeeze.<k>.<p>``              ``decoder.propagation.<s-1>.gates.<t>.gate.<k>.<p>``
``distillation_scale_<i>.self_attention.<t>.<a>.      ``decoder.distillation.<i>.paths.<t>.<a>.
attention.0.<p>`` / ``.conv.<p>``                     attention.<p>`` / ``.value.<p>``
``heads.<t>.last_layer.<k>.<p>``                      ``decoder.heads.<t>.<k>.<p>``
====================================================  ==============================================

and, outside the backbone, a basic block's ``downsample`` shortcut is our ``shortcut``.

The model to load the result into must have the official task order (it fixes the channel
layout of the feature propagation modules' concatenations) and the defaults
``model.hrnet_fuse_upsample: bilinear`` and ``model.mtinet_fpm_softmax: channel_groups``,
which compute the official function (checked against the official code's outputs by
``tests/test_official_mtinet.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from mtlsearch.errors import UserError
from mtlsearch.models.official import Conversion

TASK_NAMES = {"human_parts": "parts"}
"""Official task names that are spelled differently here."""

_T = r"[A-Za-z][A-Za-z0-9_]*"  # a task name (no dots)

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _task(name: str) -> str:
    return TASK_NAMES.get(name, name)


def _block(rest: str) -> str:
    """A basic block's parameter path: the official ``downsample`` is our ``shortcut``."""
    return re.sub(r"^((?:\d+\.)?)downsample\.", r"\1shortcut.", rest)


_RULES: list[Rule] = [
    (re.compile(r"backbone\.(.+)"), lambda m: f"backbone.body.{m[1]}"),
    (
        re.compile(rf"scale_(\d+)\.refinement\.({_T})\.(\d+)\.(.+)"),
        lambda m: f"decoder.initial.{m[1]}.refine.{_task(m[2])}.{m[3]}.{_block(m[4])}",
    ),
    (
        re.compile(rf"scale_(\d+)\.decoders\.({_T})\.(weight|bias)"),
        lambda m: f"decoder.initial.{m[1]}.predict.{_task(m[2])}.{m[3]}",
    ),
    (
        re.compile(r"fpm_scale_(\d+)\.non_linear\.(.+)"),
        lambda m: f"decoder.propagation.{int(m[1]) - 1}.masks.{_block(m[2])}",
    ),
    (
        re.compile(r"fpm_scale_(\d+)\.dimensionality_reduction\.(.+)"),
        lambda m: f"decoder.propagation.{int(m[1]) - 1}.reduce.{_block(m[2])}",
    ),
    (
        re.compile(rf"fpm_scale_(\d+)\.se\.({_T})\.squeeze\.(\d+\.(?:weight|bias))"),
        lambda m: f"decoder.propagation.{int(m[1]) - 1}.gates.{_task(m[2])}.gate.{m[3]}",
    ),
    (
        re.compile(rf"distillation_scale_(\d+)\.self_attention\.({_T})\.({_T})\.(attention\.0|conv)\.(weight)"),
        lambda m: (
            f"decoder.distillation.{m[1]}.paths.{_task(m[2])}.{_task(m[3])}."
            f"{'value' if m[4] == 'conv' else 'attention'}.{m[5]}"
        ),
    ),
    (
        re.compile(rf"heads\.({_T})\.last_layer\.(.+)"),
        lambda m: f"decoder.heads.{_task(m[1])}.{m[2]}",
    ),
]


def rename(key: str) -> str | None:
    """Our name for official key ``key`` (None: no rule knows it)."""
    for pattern, target in _RULES:
        match = pattern.fullmatch(key)
        if match:
            return target(match)
    return None


def _shown(keys: list[str], first: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > first else ""
    return ", ".join(keys[:first]) + more


def official_tasks(official: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Output channels per task (our task names), read from the official heads, in the
    order of the official state_dict."""
    tasks: dict[str, int] = {}
    for key, value in official.items():
        match = re.fullmatch(rf"heads\.({_T})\.last_layer\.3\.weight", key)
        if match:
            tasks[_task(match[1])] = int(value.shape[0])
    if not tasks:
        raise UserError(
            "official MTI-Net state_dict: no task heads (heads.<task>.last_layer.3.weight); "
            f"first keys: {_shown(list(official))}"
        )
    return tasks


def official_backbone(official: Mapping[str, torch.Tensor]) -> str:
    """The timm HRNet whose state_dict has exactly the names and shapes of the official
    ``backbone.*`` tensors (built on the meta device, so nothing is allocated)."""
    import timm

    from mtlsearch.models.backbones import DEFAULT_OUT_INDICES, _create

    theirs = {k[len("backbone."):]: tuple(v.shape) for k, v in official.items() if k.startswith("backbone.")}
    width_key = "stage2.0.branches.0.0.conv1.weight"
    if width_key not in theirs:
        raise UserError(
            f"official MTI-Net state_dict: no HRNet backbone (backbone.{width_key} is missing); "
            f"first keys: {_shown(list(official))}"
        )
    width = theirs[width_key][0]
    names = [n for n in timm.list_models(f"hrnet_w{width}*") if not n.endswith("_ssld")]
    for name in names:
        with torch.device("meta"):
            ours = _create(name, DEFAULT_OUT_INDICES).state_dict()
        if {k: tuple(v.shape) for k, v in ours.items()} == theirs:
            return name
    raise UserError(
        f"official MTI-Net state_dict: its HRNet backbone ({len(theirs)} tensors, width {width}) "
        f"matches none of timm's {', '.join(names) or 'HRNets'}"
    )


def target_shapes(official: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Names and shapes of our model's state_dict for the official model's backbone and
    tasks (built on the meta device)."""
    from mtlsearch.models.backbones import DEFAULT_OUT_INDICES, _create
    from mtlsearch.models.decoders import build_decoder

    tasks = official_tasks(official)
    with torch.device("meta"):
        body = _create(official_backbone(official), DEFAULT_OUT_INDICES)
        info = body.feature_info
        decoder = build_decoder("mtinet", list(info.channels()), list(info.reduction()), tasks, 64, 4)
    shapes = {f"backbone.body.{k}": tuple(v.shape) for k, v in body.state_dict().items()}
    shapes.update({f"decoder.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()})
    return shapes


def convert(
    official: dict[str, torch.Tensor], target: Mapping[str, torch.Tensor] | None = None
) -> Conversion:
    """The official MTI-Net ``state_dict`` under our names (see the module docstring).

    ``target``: the state_dict of the model it is meant for (its names and shapes are
    checked); default: our MTI-Net over the timm HRNet of the official backbone's layout,
    with the official heads' tasks. Raises :class:`UserError` naming the official keys no
    rule knows or that the target lacks, the target keys left without a value, and
    tensors whose shape differs from the target's.
    """
    if target is None:
        shapes = target_shapes(official)
    else:
        shapes = {k: tuple(v.shape) for k, v in target.items()}
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    source: dict[str, str] = {}
    for key, value in official.items():
        name = rename(key)
        if name is None or name not in shapes:
            unknown.append(key)
            continue
        if name in out:
            raise UserError(f"official MTI-Net state_dict: {source[name]} and {key} both map to {name}")
        out[name], source[name] = value, key
    if unknown:
        raise UserError(
            f"official MTI-Net state_dict: {len(unknown)} keys unknown to our MTI-Net: {_shown(unknown)}"
        )
    wrong = [k for k, v in out.items() if tuple(v.shape) != shapes[k]]
    if wrong:
        shown = "; ".join(
            f"{source[k]} {tuple(out[k].shape)} vs ours ({k}) {shapes[k]}" for k in wrong[:5]
        )
        more = f" ({len(wrong)} in all)" if len(wrong) > 5 else ""
        raise UserError(f"official MTI-Net state_dict: shape mismatches: {shown}{more}")
    missing = [k for k in shapes if k not in out]
    if missing:
        raise UserError(
            f"official MTI-Net state_dict: lacks {len(missing)} tensors of our MTI-Net: {_shown(missing)}"
        )
    return Conversion(state_dict=out, dropped=[])
