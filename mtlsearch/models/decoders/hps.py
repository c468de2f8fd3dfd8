"""``hps``: hard parameter sharing. Every backbone level projected (1x1 conv) to ``width``,
resized to the decoder scale, concatenated and fused by a 3x3 conv (HRNet-style fusion);
one head per task on the fused map."""

from __future__ import annotations

import torch
from torch import nn

from mtlsearch.models.decoders.base import FusedDecoder, conv_bn_relu, register_decoder, resize


@register_decoder("hps")
class HPSDecoder(FusedDecoder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.proj = nn.ModuleList([conv_bn_relu(c, self.width, 1) for c in self.in_channels])
        self.fusion = conv_bn_relu(self.width * len(self.in_channels), self.width, 3)

    def fuse(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        maps = [resize(p(x), size) for p, x in zip(self.proj, feats)]
        return self.fusion(torch.cat(maps, dim=1))
