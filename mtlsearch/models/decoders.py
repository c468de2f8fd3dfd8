"""Multi-task decoders: fuse backbone features into one map, then one head per task.

Every decoder has the same shape (timm style): a class registered with
``@register_decoder(name)`` whose ``fuse`` turns the backbone's feature list into one
``(B, width, ceil(H / stride), ceil(W / stride))`` map, ``stride`` = ``model.decoder_stride``
(4 by default, i.e. 1/4 of the input). Optional extra features (the cross-view module's
output) are resized to that scale and concatenated; the result ``f`` is the heads' input
and the regularizer's input. Each head (3x3 conv, BN, ReLU, 1x1 conv) predicts a task's
channels (``mtlsearch.tasks`` conventions) at ``f``'s scale, upsampled bilinearly to the
input size.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.errors import UserError

DECODERS: dict[str, type[Decoder]] = {}


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


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def make_head(cin: int, cout: int, width: int) -> nn.Module:
    """A task head: 3x3 conv + BN + ReLU, then a 1x1 conv to the task's channels."""
    return nn.Sequential(conv_bn_relu(cin, width, 3), nn.Conv2d(width, cout, 1))


class Decoder(nn.Module, abc.ABC):
    """Base MTL decoder. Subclasses implement :meth:`fuse`.

    Args:
        in_channels / reductions: the backbone's per-level channels and strides.
        task_channels: output channels per task.
        width: ``model.decoder_width``; stride: ``model.decoder_stride``.
        extra_channels: channels concatenated to the fused map before the heads (0: none).
    """

    def __init__(
        self,
        in_channels: list[int],
        reductions: list[int],
        task_channels: dict[str, int],
        width: int,
        stride: int,
        extra_channels: int = 0,
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.reductions = list(reductions)
        self.width = width
        self.stride = stride
        self.extra_channels = extra_channels
        self.out_channels = width + extra_channels
        """Channels of the heads' input ``f`` (fused map + extra features)."""
        self.task_channels = dict(task_channels)
        self.heads = self.make_heads()

    def make_heads(self) -> nn.ModuleDict:
        """A fresh set of task heads (also used for the Table-4 auxiliary heads)."""
        return nn.ModuleDict(
            {t: make_head(self.out_channels, c, self.width) for t, c in self.task_channels.items()}
        )

    def feature_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return math.ceil(image_size[0] / self.stride), math.ceil(image_size[1] / self.stride)

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
        size = self.feature_size(image_size)
        f = self.fuse(feats, size)
        if self.extra_channels:
            if extra is None or extra.shape[1] != self.extra_channels:
                got = None if extra is None else extra.shape[1]
                raise ValueError(f"decoder expects {self.extra_channels} extra channels, got {got}")
            f = torch.cat([f, _resize(extra, size)], dim=1)
        return f

    @staticmethod
    def apply_heads(
        heads: nn.ModuleDict, f: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """Run each head on ``f`` and upsample its output to ``image_size``."""
        return {t: _resize(head(f), image_size) for t, head in heads.items()}

    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Return (task outputs at ``image_size``, the heads' input ``f``)."""
        f = self.features(feats, image_size, extra)
        return self.apply_heads(self.heads, f, image_size), f


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@register_decoder("hps")
class HPSDecoder(Decoder):
    """Hard parameter sharing: every level projected (1x1 conv) to ``width``, resized to
    the decoder scale, concatenated and fused by a 3x3 conv (HRNet-style fusion)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.proj = nn.ModuleList([conv_bn_relu(c, self.width, 1) for c in self.in_channels])
        self.fusion = conv_bn_relu(self.width * len(self.in_channels), self.width, 3)

    def fuse(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        maps = [_resize(p(x), size) for p, x in zip(self.proj, feats)]
        return self.fusion(torch.cat(maps, dim=1))


@register_decoder("fpn")
class FPNDecoder(Decoder):
    """Feature pyramid: lateral 1x1 convs, top-down upsample-and-add from the coarsest
    level, a 3x3 smoothing conv on the result resized to the decoder scale."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lateral = nn.ModuleList([nn.Conv2d(c, self.width, 1) for c in self.in_channels])
        self.smooth = conv_bn_relu(self.width, self.width, 3)

    def fuse(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[-2] * feats[i].shape[-1])
        top = self.lateral[order[0]](feats[order[0]])
        for i in order[1:]:
            lat = self.lateral[i](feats[i])
            top = lat + _resize(top, tuple(lat.shape[-2:]))
        return self.smooth(_resize(top, size))


def build_decoder(
    name: str,
    in_channels: list[int],
    reductions: list[int],
    task_channels: dict[str, int],
    width: int,
    stride: int,
    extra_channels: int = 0,
) -> Decoder:
    """Instantiate the registered decoder ``name`` (UserError naming ``model.decoder``)."""
    if name not in DECODERS:
        raise UserError(f"model.decoder: unknown decoder {name!r} (known: {', '.join(list_decoders())})")
    if width <= 0:
        raise UserError(f"model.decoder_width: must be positive, got {width}")
    return DECODERS[name](in_channels, reductions, task_channels, width, stride, extra_channels)
