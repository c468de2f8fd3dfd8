"""Backbones: any timm model that supports ``features_only``, by name, never downloaded.

:func:`build_backbone` wraps ``timm.create_model(name, pretrained=False, features_only=True)``
in a :class:`Backbone` that returns a list of feature maps with known ``channels`` and
``reductions`` (input stride of each map). Family-specific choices:

* HRNets use ``feature_location=""``: the raw multi-resolution branch outputs
  (18/36/72/144 channels for W18, 48/96/192/384 for W48), the features the multi-task
  literature fuses, rather than timm's classification "incre" features. Their fuse
  layers upsample bilinearly (align_corners=False) like the segmentation HRNet that
  MTI-Net's official code builds (``model.hrnet_fuse_upsample``; ``nearest`` restores
  timm's classification HRNet), so that code's HRNet state_dicts load one to one (same
  names and shapes as timm's) and compute its function. Their fixed x2 fusions need
  sizes that are multiples of 32: other inputs are zero-padded at the bottom/right to
  the next multiple and the features cropped to ceil(size / stride), so every level
  stays aligned with the image's top-left corner.
* ViTs (single-scale backbones) are built with ``dynamic_img_size=True`` and
  ``dynamic_img_pad=True``, so any input size works (padded to a multiple of the patch
  size; the position embedding is interpolated); their ``out_indices`` index transformer
  blocks, and the config default ``[1, 2, 3, 4]`` becomes four evenly spaced blocks
  ending at the last one (InvPT's and DPT's choice, e.g. [5, 11, 17, 23] for ViT-L).
* ``model.backbone_kwargs`` go to ``timm.create_model`` (widths, depth, heads, drop path).
* A decoder may ask for more through its ``backbone_setup`` class attribute (InvPT does):
  ``final_norm`` applies the ViT's final norm to the last level (timm prunes it from
  feature models; it is rebuilt, and loaded from pretrained weights); ``train_grid``
  builds the position embedding on the training grid, ``data.crop_size`` padded to the
  size multiple, divided by the patch size (resampled at run time only for another
  grid); ``size_multiple`` pads every input to that multiple WITHOUT cropping the
  features back (the decoder crops its outputs to the image).

Pretrained weights come only from ``model.pretrained_path``, a local file
(``.safetensors`` or a torch checkpoint read with ``weights_only=True``); a position
embedding of another grid size is resampled once, when loading (bicubic, align_corners
False, no antialiasing: how the official InvPT code resizes its pretrained 24x24 grid).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.config import ModelConfig
from mtlsearch.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_OUT_INDICES = (1, 2, 3, 4)
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module")
_PREFIXES = ("module.", "backbone.", "model.", "encoder.")


class Backbone(nn.Module):
    """A timm feature extractor with its per-level ``channels`` and ``reductions``."""

    def __init__(self, name: str, model: nn.Module) -> None:
        super().__init__()
        self.name = name
        self.body = model
        info = model.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        self.size_multiple = 32 if name.startswith("hrnet") else 1
        """Inputs are padded to multiples of this (features cropped back if ``crop_features``)."""
        self.crop_features = True
        """Crop the features of a padded input back to ceil(size / stride)."""
        self.final_norm = False
        """Apply the ViT's final norm (``body.model.norm``) to the last level."""

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        h, w = image.shape[-2:]
        pad_h, pad_w = -h % self.size_multiple, -w % self.size_multiple
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
        feats = self.body(image)
        if isinstance(feats, dict):
            feats = list(feats.values())
        feats = list(feats)
        if self.final_norm:
            feats[-1] = self.body.model.norm(feats[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if (pad_h or pad_w) and self.crop_features:
            feats = [
                x[..., : math.ceil(h / r), : math.ceil(w / r)] for x, r in zip(feats, self.reductions)
            ]
        return list(feats)


def _create(
    name: str,
    out_indices: tuple[int, ...],
    user: dict[str, Any] | None = None,
    vit: dict[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model`` as a feature model, with ``user`` keyword arguments
    (``model.backbone_kwargs``) and ``vit`` ones tried only with the ViT options."""
    import timm

    kwargs: dict[str, object] = {**(user or {}), "pretrained": False, "features_only": True}
    kwargs["out_indices"] = out_indices
    if name.startswith("hrnet"):
        kwargs["feature_location"] = ""
    # ViT-style models accept dynamic_img_size (most also dynamic_img_pad); CNNs reject
    # them with a TypeError.
    dynamic = {"dynamic_img_size": True, **(vit or {})}
    for extra in ({**dynamic, "dynamic_img_pad": True}, dynamic, {}):
        try:
            return timm.create_model(name, **extra, **kwargs)
        except TypeError:
            if not extra:
                raise
    raise AssertionError("unreachable")


def out_indices_problem(
    name: str, out_indices: tuple[int, ...], kwargs: dict[str, Any] | None = None
) -> str | None:
    """Why timm model ``name`` cannot give ``features_only`` features at ``out_indices``
    (None: it can), for config validation. The model is built on the meta device (no
    memory, fast), and on the CPU before refusing, so a model that cannot be built on
    the meta device is never refused by mistake. ``kwargs``: ``model.backbone_kwargs``."""
    problem = ""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                _create(name, tuple(out_indices), kwargs)
            return None
        except (RuntimeError, AssertionError, IndexError, ValueError, TypeError) as err:
            problem = f"{type(err).__name__}: {err}"
    return f"{name!r} cannot give features_only features at these levels ({problem})"


def _decoder_setup(decoder: str) -> dict[str, Any]:
    """What decoder ``decoder`` asks of its backbone (its ``backbone_setup``; see above)."""
    from mtlsearch.models.decoders import DECODERS

    return dict(getattr(DECODERS.get(decoder), "backbone_setup", {}))


def build_backbone(cfg: ModelConfig, image_size: tuple[int, int] | None = None) -> Backbone:
    """Create the backbone named by ``cfg.backbone`` and load ``cfg.pretrained_path`` if set.

    ``image_size``: the training input size (``data.crop_size``), for a decoder whose
    ``backbone_setup`` asks for a position embedding on the training grid."""
    import timm

    name = cfg.backbone
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise UserError(f"model.backbone: unknown timm model {name!r}{hint}")
    out_indices = tuple(cfg.out_indices)
    user = dict(cfg.backbone_kwargs)
    setup = _decoder_setup(cfg.decoder)
    multiple = int(setup.get("size_multiple", 1))
    vit: dict[str, Any] = {}
    if setup.get("train_grid") and image_size is not None and "img_size" not in user:
        vit["img_size"] = tuple(-(-int(s) // multiple) * multiple for s in image_size)
    try:
        model = _create(name, out_indices, user, vit)
        reductions = list(model.feature_info.reduction())
        single_scale = len(set(reductions)) == 1 and len(reductions) > 1
        if single_scale and out_indices == DEFAULT_OUT_INDICES:
            # Indexing the last block keeps the whole (unpruned) transformer: read its depth.
            depth = _num_blocks(_create(name, (-1,), user, vit))
            if depth:
                spaced = tuple(sorted({depth * (i + 1) // 4 - 1 for i in range(4)}))
                model = _create(name, spaced, user, vit)
    except (RuntimeError, AssertionError, IndexError, ValueError, TypeError) as err:
        raise UserError(
            f"model.backbone: {name!r} cannot give features_only features at "
            f"model.out_indices={list(out_indices)} with model.backbone_kwargs={user}: {err}"
        ) from None
    if name.startswith("hrnet"):
        set_hrnet_fuse_upsample(model, cfg.hrnet_fuse_upsample)
    backbone = Backbone(name, model)
    inner = getattr(model, "model", None)
    if single_scale and setup.get("final_norm") and hasattr(inner, "norm") and hasattr(inner, "blocks"):
        if isinstance(inner.norm, nn.Identity):  # pruned by timm's feature wrapper: rebuild it
            inner.norm = copy.deepcopy(inner.blocks[-1].norm1)
            inner.norm.reset_parameters()
        backbone.final_norm = True
    if single_scale and multiple > 1:
        backbone.size_multiple, backbone.crop_features = multiple, False
    if cfg.pretrained_path:
        load_pretrained(backbone.body, cfg.pretrained_path)
    return backbone


def set_hrnet_fuse_upsample(model: nn.Module, mode: str) -> int:
    """Make every HRNet fuse layer's ``nn.Upsample`` (timm builds them ``nearest``) use
    ``mode``: ``bilinear`` (align_corners=False) or ``nearest``. No parameters change; the
    x2^k factors are exact (inputs are padded to multiples of 32), so this equals
    resizing to the finer branch's size. Returns the number of layers set."""
    if mode not in ("bilinear", "nearest"):
        raise UserError(f"model.hrnet_fuse_upsample: expected bilinear or nearest, got {mode!r}")
    count = 0
    for path, module in model.named_modules():
        if isinstance(module, nn.Upsample) and ".fuse_layers." in f".{path}.":
            module.mode = mode
            module.align_corners = False if mode == "bilinear" else None
            count += 1
    return count


def _num_blocks(model: nn.Module) -> int:
    """Transformer depth of a single-scale timm feature model (0 if unknown)."""
    inner = getattr(model, "model", model)
    blocks = getattr(inner, "blocks", None)
    return len(blocks) if blocks is not None else 0


def read_state_dict(path: str | Path, key: str = "model.pretrained_path") -> dict[str, torch.Tensor]:
    """Read a weights file (safetensors or torch, ``weights_only=True``) into a flat dict;
    errors name ``key`` (the config key or argument that gave the path)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}: weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        raise UserError(f"{key}: cannot read weights from {path}: {err}") from None
    for wrapper in _WRAPPER_KEYS:
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{key}: {path} does not hold a state dict of tensors")
    return data


def _remap(source: dict[str, torch.Tensor], target: set[str]) -> dict[str, torch.Tensor]:
    """Rename ``source`` keys to the target's naming: strip or add a wrapper prefix
    (``module.``, ``backbone.``, ``model.``...), keeping whichever matches the most keys."""
    candidates = [source]
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in source):
            candidates.append({k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)})
        candidates.append({prefix + k: v for k, v in source.items()})
    return max(candidates, key=lambda c: len(target.intersection(c)))


def _resample_pos_embed(model: nn.Module, key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A ViT position embedding ``value`` (1, prefix + h*w, C) resampled to ``target``'s grid."""
    from timm.layers import resample_abs_pos_embed

    inner = getattr(model, "model", model)
    prefix = 0 if getattr(inner, "no_embed_class", False) else int(getattr(inner, "num_prefix_tokens", 1))
    src, dst = value.shape[1] - prefix, target.shape[1] - prefix
    grid = getattr(getattr(inner, "patch_embed", None), "grid_size", None)
    side = round(src**0.5)
    if side * side != src or grid is None or grid[0] * grid[1] != dst:
        return value
    return resample_abs_pos_embed(
        value, list(grid), old_size=[side, side], num_prefix_tokens=prefix, antialias=False
    )


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load backbone weights from a local file; extra keys (a classifier) are ignored, a
    ViT position embedding of another grid is resampled, missing keys or shape mismatches
    raise :class:`UserError` naming the file, the first missing and unexpected keys."""
    own = model.state_dict()
    weights = _remap(read_state_dict(path), set(own))
    missing = [k for k in own if k not in weights]
    if missing:
        unexpected = [k for k in weights if k not in own]
        shown = ", ".join(unexpected[:5]) if unexpected else "none"
        raise UserError(
            f"model.pretrained_path: {path} does not fit the backbone: it lacks {len(missing)} of "
            f"its {len(own)} keys, first missing: {', '.join(missing[:5])}; first unexpected "
            f"({len(unexpected)}): {shown}"
        )
    for k in own:
        if k.endswith("pos_embed") and weights[k].dim() == 3 and weights[k].shape != own[k].shape:
            weights[k] = _resample_pos_embed(model, k, weights[k], own[k])
    bad = [k for k in own if tuple(weights[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise UserError(
            f"model.pretrained_path: {path}: {len(bad)} shape mismatches, e.g. {k}: "
            f"file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        )
    model.load_state_dict({k: weights[k] for k in own}, strict=True)
    extra = len(set(weights) - set(own))
    log.info("loaded %d backbone tensors from %s (%d extra keys ignored)", len(own), path, extra)
