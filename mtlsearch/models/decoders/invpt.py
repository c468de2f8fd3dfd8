"""``invpt``: InvPT (Ye & Xu, ECCV 2022, arXiv 2203.07997), our implementation.

Over a single-scale ViT whose features come from 4 evenly spaced blocks (the backbone's
default ``model.out_indices``), all on the token grid g = input / patch (1/16):

1. **Preliminary decoders**: per task, two 3x3 conv-BN-ReLU (ViT width C -> C -> D, D =
   ``model.decoder_width``, 512 in the paper) on the last block's map give task features
   and, by a 1x1 conv, intermediate predictions at 1/16 (``inter["<task>@16"]``,
   supervised). Each task's features and prediction are concatenated and projected (1x1)
   to the decoder width E = D + D/8 rounded up to a multiple of 8 (576 for D = 512: the
   paper's 512 plus 64 channels of projected predictions).
2. **Inverted pyramid**: three UP-Transformer stages at 1/16, 1/8 and 1/4 with widths
   E, E/2, E/4. Stages 2 and 3 first upsample every task's map x2 (bilinear, then two
   dilated 3x3 conv-BN-ReLU). Each stage adds encoder features of its scale: the third
   block's map (3x3 conv) at 1/16, the second's (transposed conv x2) at 1/8, the first's
   (transposed conv x4) at 1/4. Then one transformer block over the tokens of ALL tasks
   together: joint multi-head self-attention (2 heads) whose queries come from a strided
   depthwise conv-BN (1/2 of the stage grid) and whose keys/values are average-pooled by
   2, 4, 8 (the same key grid at every stage), then an MLP (ratio 4), pre-norm residuals,
   stochastic depth 0.15. Cross-scale message passing: a stage's attention scores are
   upsampled over the query grid into the next stage and fused with its own scores by a
   1x1 conv over the heads.
3. **Aggregation and heads**: each stage's output (layer-normed over all tasks' channels,
   projected back to E after the first stage) is upsampled to 1/4 and summed per task;
   a 3x3 conv-BN-ReLU, then a linear (1x1 conv) head per task, upsampled to the input.

Cross-view features (``extra_channels``) are resized to the token grid and concatenated
to the preliminary decoders' input. The shared map f (``model.shared_features``):
``encoder`` (default) the last block's map (and the cross-view features) resized to the
render scale; ``decoder`` the tasks' final features concatenated, resized to it.

With ViT-L/16 and NYUD's 4 tasks at 448x576 this has 401,350,094 parameters against the
official implementation's 402,092,888: ours omit its 1,330,570 never-used weights, keep
timm's 24x24 position embedding (interpolated at run time: -442,368) and learn the x4
encoder upsampling of the third stage (+1,032,192). Any input size works (the ViT pads
to a multiple of its patch size).
"""

from __future__ import annotations

import math

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
        scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
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
        x = scores.view(b * heads * tasks, ph, pw, nk).permute(0, 3, 1, 2)
        x = resize(x, grid).permute(0, 2, 3, 1)
        return x.reshape(b, heads, tasks * grid[0] * grid[1], nk)


class Mlp(nn.Sequential):
    def __init__(self, dim: int) -> None:
        super().__init__(nn.Linear(dim, MLP_RATIO * dim), nn.GELU(), nn.Linear(MLP_RATIO * dim, dim))


class UpTransformerStage(nn.Module):
    """One stage: (upsample,) add encoder features, a joint transformer block, and the
    stage's output normalised over all tasks' channels and projected to the final width."""

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
        self, maps: list[torch.Tensor], skip: torch.Tensor, message: Message | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], Message]:
        """Returns (the stage's per-task maps, their outputs at the final width, message)."""
        if self.up is not None:
            maps = [up(x) for up, x in zip(self.up, maps)]
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
        self.encoder_proj = nn.ModuleList(
            [
                nn.Conv2d(c, self.dims[0], 3, padding=1),
                nn.ConvTranspose2d(c, self.dims[1], 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(c, self.dims[2], 4, stride=4),
            ]
        )
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

    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> DecoderOutput:
        tasks = list(self.task_channels)
        x = self.with_extra(feats[-1], extra)
        inter, maps = {}, []
        for t in tasks:
            feat = self.preliminary[t](x)
            pred = self.inter_heads[t](feat)
            inter[f"{t}@{self.reductions[-1]}"] = pred
            maps.append(self.mix[t](torch.cat([feat, pred], dim=1)))
        g = tuple(x.shape[-2:])
        fine = (4 * g[0], 4 * g[1])
        skips = [self.encoder_proj[i](feats[2 - i]) for i in range(NUM_STAGES)]
        summed: list[torch.Tensor] | None = None
        message = None
        for stage, skip in zip(self.stages, skips):
            maps, outs, message = stage(maps, skip, message)
            outs = [resize(o, fine) for o in outs]
            summed = outs if summed is None else [a + o for a, o in zip(summed, outs)]
        task_feats = {t: self.final[t](s) for t, s in zip(tasks, summed)}
        heads = {t: resize(self.heads[t](task_feats[t]), image_size) for t in tasks}
        size = scaled_size(image_size, self.shared_scale)
        shared = x if self.shared_features == "encoder" else torch.cat([task_feats[t] for t in tasks], dim=1)
        return DecoderOutput(heads, resize(shared, size), inter)


def _init_linear(m: nn.Module) -> None:
    """Transformer initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
