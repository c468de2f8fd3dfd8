"""``invpt``: InvPT (Ye & Xu, ECCV 2022, arXiv 2203.07997), the official network's function.

Computes what the official code (prismformore/Multi-Task-Transformer, ``InvPT``) computes,
checked against its outputs by ``tests/test_official_invpt.py``; its checkpoints convert
with :mod:`mtlsearch.models.official.invpt`. Over a single-scale ViT with 4 taps (the
default ``model.out_indices``: blocks 6, 12, 18, 24 of ViT-L), which this decoder's
``backbone_setup`` makes the backbone build as the official one: the final LayerNorm on
the last tap, the position embedding on the training grid (``data.crop_size`` / 16), and
inputs zero-padded at the bottom/right to multiples of 64 (outputs cropped back):

1. **Preliminary decoders** at 1/32: the last tap (normed, 1/16) is bilinearly halved; per
   task two 3x3 conv-BN-ReLU (C -> C -> D, D = ``model.decoder_width``, 512 in the paper)
   give task features and, by a 1x1 conv, intermediate predictions (``inter["<task>@32"]``,
   deep supervision). Features and prediction are concatenated and projected (1x1) to
   E = D + D/8 rounded up to a multiple of 8 (576 for D = 512).
2. **Inverted pyramid**: three UP-Transformer stages at 1/32, 1/16, 1/8 with widths E, E/2,
   E/4. Stages 2 and 3 first upsample each task's map (bilinear x2, two dilated 3x3
   conv-BN-ReLU), then add an encoder skip shared by all tasks: block 12's map through a
   3x3 conv (stage 2, 1/16), block 6's through a stride-2 transposed conv (stage 3, 1/8);
   block 18's tap is not used. One transformer block per stage over the tokens of ALL tasks:
   joint attention (2 heads, logits scaled by the stage width's dim**-0.5) with queries from a
   per-task strided depthwise conv-BN and keys/values average-pooled by 2, 4, 8, whose
   output (on the query grid) is resized back and added; then an MLP (ratio 4); drop path
   0.15. Stages 2 and 3 fuse their attention scores with the previous stage's (upsampled
   x2 over the query grid) by a 1x1 conv over the heads.
3. **Aggregation and heads**: each stage's maps are layer-normed over all tasks' channels
   jointly, projected to E (stages 2, 3), resized to 1/4 and summed per task; a 3x3
   conv-BN-ReLU and a 1x1 head per task, resized to the input.

Cross-view features (``extra_channels``) are resized to the real (unpadded) part of the
1/16 grid and concatenated to the last tap. The shared map f (``model.shared_features``):
``encoder`` (default) that 1/16 map; ``decoder`` the tasks' final 1/4 features
concatenated; brought to the render scale.

With ViT-L/16 and NYUD's 4 tasks at 448x576: 395,453,326 parameters, the official
402,092,888 less the 1,330,570 its forward never reads and the 5,308,992 of the block-18
skip it computes and discards (``tests/test_base_models.py``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.errors import UserError
from mtlsearch.models.decoders.base import (
    Decoder,
    DecoderOutput,
    conv_bn_relu,
    register_decoder,
    resize,
    scaled_size,
)

NUM_STAGES = 3
NUM_HEADS = 2
MLP_RATIO = 4
DROP_PATH = 0.15
SIZE_MULTIPLE = 64
"""Inputs are padded to this: the 1/32 grid is then even, so grids and messages line up."""

Message = tuple[torch.Tensor, tuple[int, int]]
"""Attention scores of a stage and its query grid, passed to the next stage."""


def decoder_width(width: int) -> int:
    """E: ``width`` plus an eighth for the projected predictions, a multiple of 8."""
    return math.ceil((width + width // 8) / 8) * 8


class UpEmbed(nn.Sequential):
    """x2 bilinear upsampling, then two dilated 3x3 conv-BN-ReLU (``cin`` -> ``cout``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(cin, cout, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class JointAttention(nn.Module):
    """Self-attention over the tokens of all tasks: strided depthwise-conv queries,
    average-pooled keys/values, optional fusion with the previous stage's scores."""

    def __init__(self, num_tasks: int, dim: int, kv_stride: int, message: bool) -> None:
        super().__init__()
        self.heads = NUM_HEADS
        self.kv_stride = kv_stride
        self.scale = dim**-0.5
        """Logit scale: the whole stage width's, as the official code (not the head width's)."""
        self.q_conv = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(dim, dim, 3, stride=2, padding=1, groups=dim, bias=False), nn.BatchNorm2d(dim))
                for _ in range(num_tasks)
            ]
        )
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.fuse = nn.Conv2d(2 * NUM_HEADS, NUM_HEADS, 1) if message else None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(
        self, maps: list[torch.Tensor], message: Message | None
    ) -> tuple[list[torch.Tensor], Message]:
        """maps: per task (B, d, h, w). Returns per-task outputs at (h, w) and the message
        for the next stage: the scores (B, heads, T * hq * wq, T * hk * wk) and (hq, wq)."""
        h, w = maps[0].shape[-2:]
        queries = [conv(x) for conv, x in zip(self.q_conv, maps)]
        qh, qw = queries[0].shape[-2:]
        pooled = [F.avg_pool2d(x, self.kv_stride, self.kv_stride, ceil_mode=True) for x in maps]
        q = torch.cat([x.flatten(2).transpose(1, 2) for x in queries], dim=1)
        kv = torch.cat([x.flatten(2).transpose(1, 2) for x in pooled], dim=1)
        q, k, v = self._split_heads(self.q(q)), self._split_heads(self.k(kv)), self._split_heads(self.v(kv))
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if self.fuse is not None and message is not None:
            scores = self.fuse(torch.cat([scores, self._upsample_message(message, len(maps), (qh, qw))], dim=1))
        out = self.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).flatten(2))
        b, d = out.shape[0], out.shape[-1]
        per_task = out.view(b, len(maps), qh * qw, d).transpose(2, 3).reshape(b, len(maps), d, qh, qw)
        return [resize(per_task[:, i], (h, w)) for i in range(len(maps))], (scores, (qh, qw))

    @staticmethod
    def _upsample_message(message: Message, tasks: int, grid: tuple[int, int]) -> torch.Tensor:
        """The previous stage's scores (B, heads, T * ph * pw, K) on this stage's query grid."""
        scores, (ph, pw) = message
        b, heads, _, nk = scores.shape
        x = scores.reshape(b * heads * tasks, ph, pw, nk).permute(0, 3, 1, 2)
        x = resize(x, grid).permute(0, 2, 3, 1)
        return x.reshape(b, heads, tasks * grid[0] * grid[1], nk)


class Mlp(nn.Sequential):
    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, MLP_RATIO * dim), nn.GELU(), nn.Linear(MLP_RATIO * dim, dim))


class UpTransformerStage(nn.Module):
    """One stage: (upsample, add the encoder skip,) a joint transformer block, and the
    stage's output normalised over all tasks' channels (projected to the final width)."""

    def __init__(self, num_tasks: int, cin: int, dim: int, out_dim: int, index: int) -> None:
        super().__init__()
        from timm.layers import DropPath

        self.index = index
        self.up = None if index == 0 else nn.ModuleList([UpEmbed(cin, dim) for _ in range(num_tasks)])
        self.norm1 = nn.LayerNorm(dim)
        self.attn = JointAttention(num_tasks, dim, kv_stride=2 ** (index + 1), message=index > 0)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)
        self.drop_path = DropPath(DROP_PATH)
        self.norm_out = nn.LayerNorm(num_tasks * dim)
        self.to_out = None if index == 0 else nn.ModuleList([nn.Conv2d(dim, out_dim, 1) for _ in range(num_tasks)])

    def forward(
        self, maps: list[torch.Tensor], skip: torch.Tensor | None, message: Message | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], Message]:
        """Returns (the stage's per-task maps, their outputs at the final width, message)."""
        if self.up is not None:
            maps = [up(x) for up, x in zip(self.up, maps)]
        if skip is not None:
            maps = [x + resize(skip, tuple(x.shape[-2:])) for x in maps]
        b, d, h, w = maps[0].shape
        tokens = torch.cat([x.flatten(2).transpose(1, 2) for x in maps], dim=1)  # (B, T*h*w, d)
        normed = self.norm1(tokens).transpose(1, 2).reshape(b, d, len(maps), h, w)
        attended, message = self.attn(list(normed.unbind(2)), message)
        tokens = tokens + self.drop_path(torch.cat([x.flatten(2).transpose(1, 2) for x in attended], dim=1))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        maps = list(tokens.transpose(1, 2).reshape(b, d, len(maps), h, w).unbind(2))
        joint = self.norm_out(torch.cat(maps, dim=1).flatten(2).transpose(1, 2))
        outs = list(joint.transpose(1, 2).reshape(b, len(maps) * d, h, w).split(d, dim=1))
        if self.to_out is not None:
            outs = [proj(x) for proj, x in zip(self.to_out, outs)]
        return maps, outs, message


@register_decoder("invpt")
class InvPTDecoder(Decoder):
    """InvPT over a single-scale ViT (see the module docstring)."""

    backbone_setup: ClassVar[dict[str, object]] = {
        "final_norm": True,
        "train_grid": True,
        "size_multiple": SIZE_MULTIPLE,
    }
    """What this decoder asks of its backbone (read by ``build_backbone``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ch, red = self.in_channels, self.reductions
        if len(ch) != 4 or len(set(red)) != 1 or len(set(ch)) != 1:
            raise UserError(
                "model.decoder: invpt needs a single-scale ViT backbone with features from 4 "
                f"blocks (model.backbone, model.out_indices), got strides {red} and channels {ch}"
            )
        if self.width < 8:
            raise UserError(f"model.decoder_width: invpt needs at least 8, got {self.width}")
        tasks = list(self.task_channels)
        c, d = ch[-1], self.width
        e = decoder_width(d)
        self.embed_dim = e
        self.dims = [e, e // 2, e // 4]
        cin = c + self.extra_channels
        self.preliminary = nn.ModuleDict({t: nn.Sequential(conv_bn_relu(cin, c), conv_bn_relu(c, d)) for t in tasks})
        self.inter_heads = nn.ModuleDict({t: nn.Conv2d(d, n, 1) for t, n in self.task_channels.items()})
        self.mix = nn.ModuleDict({t: nn.Conv2d(d + n, e, 1) for t, n in self.task_channels.items()})
        # Encoder skips of stages 2 and 3: block 12 at 1/16, block 6 brought to 1/8.
        self.encoder_proj = nn.ModuleList(
            [
                nn.Conv2d(c, self.dims[1], 3, padding=1),
                nn.ConvTranspose2d(c, self.dims[2], 3, stride=2, padding=1, output_padding=1),
            ]
        )
        self._skip_taps = (1, 0)  # the taps encoder_proj reads (tests switch them)
        self._input_stride = 2 * red[-1]  # the first stage's stride, 32 (tests switch it)
        self.stages = nn.ModuleList(
            [
                UpTransformerStage(len(tasks), self.dims[max(i - 1, 0)], self.dims[i], e, i)
                for i in range(NUM_STAGES)
            ]
        )
        self.final = nn.ModuleDict(
            {
                t: nn.Sequential(nn.Conv2d(e, e, 3, padding=1), nn.BatchNorm2d(e), nn.ReLU(inplace=True))
                for t in tasks
            }
        )
        self.heads = self.make_heads(e)
        self.out_channels = cin if self.shared_features == "encoder" else len(tasks) * e
        self.apply(_init_linear)

    def make_head(self, cin: int, cout: int) -> nn.Module:
        return nn.Conv2d(cin, cout, 1)

    def prediction_layers(self, task: str) -> list[nn.Conv2d]:
        return [*super().prediction_layers(task), self.inter_heads[task]]

    def _with_extra(self, x: torch.Tensor, extra: torch.Tensor | None, real: tuple[int, int]) -> torch.Tensor:
        """``x`` with the extra features resized to its real (unpadded) top-left part."""
        self.check_extra(extra)
        if not self.extra_channels:
            return x
        extra = resize(extra, real)
        extra = F.pad(extra, (0, x.shape[-1] - real[1], 0, x.shape[-2] - real[0]))
        return torch.cat([x, extra], dim=1)

    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> DecoderOutput:
        tasks = list(self.task_channels)
        r = self.reductions[-1]
        g = tuple(feats[-1].shape[-2:])  # the token grid of the (padded) input
        padded = (g[0] * r, g[1] * r)
        real = (min(g[0], math.ceil(image_size[0] / r)), min(g[1], math.ceil(image_size[1] / r)))
        x16 = self._with_extra(feats[-1], extra, real)
        s = self._input_stride
        x = resize(x16, (max(1, padded[0] // s), max(1, padded[1] // s)))
        inter, maps = {}, []
        for t in tasks:
            feat = self.preliminary[t](x)
            pred = self.inter_heads[t](feat)
            inter[f"{t}@{s}"] = pred[..., : math.ceil(image_size[0] / s), : math.ceil(image_size[1] / s)]
            maps.append(self.mix[t](torch.cat([feat, pred], dim=1)))
        skips = [None] + [proj(feats[i]) for proj, i in zip(self.encoder_proj, self._skip_taps)]
        fine = (padded[0] // 4, padded[1] // 4)
        summed: list[torch.Tensor] | None = None
        message = None
        for stage, skip in zip(self.stages, skips):
            maps, outs, message = stage(maps, skip, message)
            outs = [resize(o, fine) for o in outs]
            summed = outs if summed is None else [a + o for a, o in zip(summed, outs)]
        task_feats = {t: self.final[t](f) for t, f in zip(tasks, summed)}
        h, w = image_size
        heads = {t: resize(self.heads[t](task_feats[t]), padded)[..., :h, :w] for t in tasks}
        shared = x16 if self.shared_features == "encoder" else torch.cat([task_feats[t] for t in tasks], dim=1)
        size = scaled_size(image_size, self.shared_scale)
        shared = resize(shared, scaled_size(padded, self.shared_scale))[..., : size[0], : size[1]]
        return DecoderOutput(heads, shared, inter)


def _init_linear(m: nn.Module) -> None:
    """Transformer initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
