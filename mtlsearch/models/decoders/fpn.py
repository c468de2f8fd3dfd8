"""``fpn``: feature pyramid. Lateral 1x1 convs, top-down upsample-and-add from the coarsest
level, a 3x3 smoothing conv on the result resized to the decoder scale; one head per task."""

from __future__ import annotations

import torch
from torch import nn

from mtlsearch.models.decoders.base import FusedDecoder, conv_bn_relu, register_decoder, resize


@register_decoder("fpn")
class FPNDecoder(FusedDecoder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lateral = nn.ModuleList([nn.Conv2d(c, self.width, 1) for c in self.in_channels])
        self.smooth = conv_bn_relu(self.width, self.width, 3)

    def fuse(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        order = sorted(range(len(feats)), key=lambda i: feats[i].shape[-2] * feats[i].shape[-1])
        top = self.lateral[order[0]](feats[order[0]])
        for i in order[1:]:
            lat = self.lateral[i](feats[i])
            top = lat + resize(top, tuple(lat.shape[-2:]))
        return self.smooth(resize(top, size))
