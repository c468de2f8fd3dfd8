"""The decoder contract, its registry and the layers the decoders share.

A decoder turns the backbone's feature list into one prediction per task. Every decoder
is a :class:`Decoder` subclass registered with ``@register_decoder(name)`` (timm style:
one file per model, the same shape each) and returns a :class:`DecoderOutput`:

* ``heads``: ``{task: (B, C_t, H, W)}`` at the input size (``mtlsearch.tasks`` conventions);
* ``shared``: the shared feature map f that the 3D-aware regularizer and the auxiliary
  heads read (``out_channels`` channels);
* ``inter``: intermediate predictions for deep supervision, ``{"<task>@<stride>": (B, C_t,
  h, w)}`` at their own scale (1/stride of the input); empty for decoders without them.

Optional extra features (the cross-view module's output, ``extra_channels`` > 0) are
resized and concatenated (:meth:`Decoder.with_extra`) into the decoder's input; each
decoder documents where.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.errors import UserError

DECODERS: dict[str, type[Decoder]] = {}

SHARED_FEATURES = ("encoder", "decoder")
"""Where the task-specific decoders (invpt, mtinet) tap the shared map f: the encoder's
output (default) or the decoder's task features concatenated."""


def register_decoder(name: str) -> Callable[[type[Decoder]], type[Decoder]]:
    """Class decorator adding a :class:`Decoder` subclass to :data:`DECODERS` under ``name``."""

    def wrap(cls: type[Decoder]) -> type[Decoder]:
        if name in DECODERS:
            raise ValueError(f"decoder {name!r} is already registered")
        DECODERS[name] = cls
        return cls

    return wrap


def list_decoders() -> list[str]:
    """Names of the registered decoders."""
    return sorted(DECODERS)


class DecoderOutput(NamedTuple):
    heads: dict[str, torch.Tensor]
    shared: torch.Tensor
    inter: dict[str, torch.Tensor]


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def make_head(cin: int, cout: int, width: int) -> nn.Module:
    """A task head: 3x3 conv + BN + ReLU, then a 1x1 conv to the task's channels."""
    return nn.Sequential(conv_bn_relu(cin, width, 3), nn.Conv2d(width, cout, 1))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``size`` (a no-op at that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size * scale`` rounded, at least 1 (the regularizer's render-size rule)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def last_conv(module: nn.Module) -> nn.Conv2d:
    """The last ``nn.Conv2d`` of ``module`` (a head's output layer)."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(module).__name__} has no Conv2d")
    return convs[-1]


class Decoder(nn.Module, abc.ABC):
    """Base MTL decoder.

    Args:
        in_channels / reductions: the backbone's per-level channels and strides.
        task_channels: output channels per task.
        width: ``model.decoder_width``; stride: ``model.decoder_stride``.
        extra_channels: channels of the cross-view features fused in (0: none).
        shared_features: ``model.shared_features`` (decoders with task-specific features).
        shared_scale: scale of ``shared`` for decoders that bring it to the render scale
            (``regularizer.render_scale``).

    Subclasses set ``out_channels`` (channels of ``shared``) and ``heads`` and implement
    :meth:`forward`; :meth:`make_head` defines the head architecture (the auxiliary heads
    of 3DMTL Table 4 reuse it on ``shared``).
    """

    def __init__(
        self,
        in_channels: list[int],
        reductions: list[int],
        task_channels: dict[str, int],
        width: int,
        stride: int,
        extra_channels: int = 0,
        shared_features: str = "encoder",
        shared_scale: float = 0.125,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise UserError(f"model.decoder_width: must be positive, got {width}")
        if shared_features not in SHARED_FEATURES:
            raise UserError(
                f"model.shared_features: {shared_features!r} is not one of {', '.join(SHARED_FEATURES)}"
            )
        self.in_channels = list(in_channels)
        self.reductions = list(reductions)
        self.width = width
        self.stride = stride
        self.extra_channels = extra_channels
        self.shared_features = shared_features
        self.shared_scale = shared_scale
        self.task_channels = dict(task_channels)
        self.out_channels = width + extra_channels
        """Channels of the shared map f (regularizer and auxiliary heads input)."""

    def make_head(self, cin: int, cout: int) -> nn.Module:
        """One task head from ``cin`` channels (default: 3x3 conv-BN-ReLU, 1x1 conv)."""
        return make_head(cin, cout, self.width)

    def make_heads(self, cin: int | None = None) -> nn.ModuleDict:
        """A fresh head per task on ``cin`` channels (default ``out_channels``, i.e. on f)."""
        cin = self.out_channels if cin is None else cin
        return nn.ModuleDict({t: self.make_head(cin, c) for t, c in self.task_channels.items()})

    def prediction_layers(self, task: str) -> list[nn.Conv2d]:
        """The convs whose outputs are ``task`` predictions (heads and intermediate ones),
        e.g. for initialising depth biases."""
        return [last_conv(self.heads[task])]

    def feature_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return math.ceil(image_size[0] / self.stride), math.ceil(image_size[1] / self.stride)

    def check_extra(self, extra: torch.Tensor | None) -> None:
        if self.extra_channels and (extra is None or extra.shape[1] != self.extra_channels):
            got = None if extra is None else extra.shape[1]
            raise ValueError(f"decoder expects {self.extra_channels} extra channels, got {got}")

    def with_extra(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """``x`` with the extra features (checked by :meth:`check_extra`) resized to it and
        concatenated along channels; ``x`` itself for a decoder without extra channels."""
        self.check_extra(extra)
        if not self.extra_channels:
            return x
        return torch.cat([x, resize(extra, tuple(x.shape[-2:]))], dim=1)

    @staticmethod
    def apply_heads(
        heads: nn.ModuleDict, f: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Run each head on ``f`` and upsample its output to ``image_size``."""
        return {t: resize(head(f), image_size) for t, head in heads.items()}

    @abc.abstractmethod
    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Task predictions at ``image_size``, the shared map and intermediate predictions."""


class FusedDecoder(Decoder):
    """A decoder whose heads all read one fused map: :meth:`fuse` turns the backbone
    levels into ``(B, width, ceil(H / stride), ceil(W / stride))``; extra features are
    resized to it and concatenated; the result f is both the heads' and the regularizer's
    input (``shared``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.heads = self.make_heads()

    @abc.abstractmethod
    def fuse(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The backbone levels fused into one map of ``size``."""

    def features(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The heads' input: fused map, with ``extra`` resized and concatenated."""
        return self.with_extra(self.fuse(feats, self.feature_size(image_size)), extra)

    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> DecoderOutput:
        f = self.features(feats, image_size, extra)
        return DecoderOutput(self.apply_heads(self.heads, f, image_size), f, {})
