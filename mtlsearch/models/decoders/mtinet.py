"""``mtinet``: MTI-Net (Vandenhende et al., ECCV 2020, arXiv 2001.06902), our implementation.

Over a backbone with four levels at strides s, 2s, 4s, 8s (HRNet: 1/4 .. 1/32, per-task
features at each scale keep the backbone's channels c_i; HRNet-W48: 48/96/192/384):

1. **Initial task predictions**, coarsest scale first: per task, two residual basic blocks
   on the scale's backbone features (concatenated, from the second scale on, with that
   task's features propagated from the coarser scale, upsampled bilinearly), then a 1x1
   conv giving the task's intermediate prediction at that scale (deep supervision: every
   task at every scale, ``inter["<task>@<stride>"]``).
2. **Feature propagation module** (FPM, after scales 1/32, 1/16, 1/8): the N tasks'
   features are concatenated (N x c_i channels), a non-linear function (two basic blocks
   at a quarter of that width, a 1x1 conv back to it) gives attention mask logits, the
   mask multiplies the concatenation, a basic block reduces the result to c_i channels,
   and each task adds a squeeze-and-excitation gated copy of that shared summary to its
   own features; the result enters the next finer scale. The mask's softmax
   (``model.mtinet_fpm_softmax``) runs, as in the official code, over each group of N
   consecutive channels (``channel_groups``, default), or, as the paper's text says,
   across the tasks for each channel (``tasks``).
3. **Multi-modal distillation** at every scale, on the initial predictions' features:
   each task's features receive the other tasks' features, each passed through a 3x3
   conv and gated by a sigmoid spatial attention map computed from them (task-to-task
   attention).
4. **Aggregation and heads**: per task, the distilled features of the four scales
   upsampled bilinearly to the finest scale and concatenated (sum c_i channels), then an
   HRNet head (1x1 conv, BN, ReLU, 1x1 conv to the task's channels), upsampled to the input.

Cross-view features (``extra_channels``) are resized to the second scale (1/8, the
cross-view module's own) and concatenated to that scale's backbone features. The shared
map f (``model.shared_features``): ``encoder`` (default) the four backbone levels (and
the cross-view features) resized to the render scale and concatenated; ``decoder`` the
tasks' aggregated features concatenated, resized to the render scale.

With HRNet-W48 and NYUD's 4 tasks this has the published architecture's 97,962,348
decoder and 2,114,685 head parameters. The official code's state_dict maps one to one onto
ours (:mod:`mtlsearch.models.official.mtinet`), and with the defaults (also the HRNet's
bilinear fuse upsampling, ``model.hrnet_fuse_upsample``) our model computes its function:
``tests/test_official_mtinet.py`` matches every output, deep-supervision map and recorded
activation of the official code's reference fixture within float32 noise. All resizes are
bilinear with align_corners=False. HRNet inputs that are not multiples of 32 are padded by
the backbone (the official code requires multiples of 32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtlsearch.errors import UserError
from mtlsearch.models.decoders.base import (
    Decoder,
    DecoderOutput,
    register_decoder,
    resize,
    scaled_size,
)

NUM_SCALES = 4


class BasicBlock(nn.Module):
    """Residual block: two 3x3 conv-BN, ReLU; a 1x1 conv-BN shortcut when widths differ."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            if cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class SqueezeExcite(nn.Module):
    """Channel gating from globally pooled features (reduction 16)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(x.mean(dim=(2, 3)))
        return x * w[:, :, None, None]


class InitialPrediction(nn.Module):
    """Per task: two basic blocks on the scale's input, then a 1x1 prediction conv."""

    def __init__(self, cin: int, channels: int, task_channels: dict[str, int]) -> None:
        super().__init__()
        self.refine = nn.ModuleDict(
            {t: nn.Sequential(BasicBlock(cin, channels), BasicBlock(channels, channels)) for t in task_channels}
        )
        self.predict = nn.ModuleDict({t: nn.Conv2d(channels, c, 1) for t, c in task_channels.items()})

    def forward(
        self, x: torch.Tensor, propagated: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        feats, preds = {}, {}
        for task, refine in self.refine.items():
            inp = x
            if propagated is not None:
                inp = torch.cat([x, resize(propagated[task], tuple(x.shape[-2:]))], dim=1)
            feats[task] = refine(inp)
            preds[task] = self.predict[task](feats[task])
        return feats, preds


FPM_SOFTMAX = ("channel_groups", "tasks")
"""Axes of the FPM mask softmax (``model.mtinet_fpm_softmax``; see :class:`FeaturePropagation`)."""


class FeaturePropagation(nn.Module):
    """Summarise all tasks' features with attention masks and hand each task an
    SE-gated copy of the summary (added to its own features).

    The mask is a softmax of the mask logits (N x c channels for N tasks, like the
    concatenated features): ``softmax="channel_groups"`` (the official code) normalises
    each group of N consecutive channels, ``"tasks"`` (the paper's text) normalises
    each channel across the N tasks' blocks."""

    def __init__(self, tasks: list[str], channels: int, softmax: str = "channel_groups") -> None:
        super().__init__()
        if softmax not in FPM_SOFTMAX:
            raise UserError(
                f"model.mtinet_fpm_softmax: expected one of {', '.join(FPM_SOFTMAX)}, got {softmax!r}"
            )
        self.tasks = list(tasks)
        self.softmax = softmax
        total = len(tasks) * channels
        quarter = max(1, total // 4)
        self.masks = nn.Sequential(
            BasicBlock(total, quarter), BasicBlock(quarter, quarter), nn.Conv2d(quarter, total, 1)
        )
        self.reduce = BasicBlock(total, channels)
        self.gates = nn.ModuleDict({t: SqueezeExcite(channels) for t in tasks})

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """The attention mask (B, N*c, h, w) from its logits, per :attr:`softmax`."""
        b, nc, h, w = logits.shape
        n = len(self.tasks)
        if self.softmax == "channel_groups":  # groups of n consecutive channels
            mask = torch.softmax(logits.reshape(b, nc // n, n, h, w), dim=2)
        else:  # each channel across the n task blocks
            mask = torch.softmax(logits.reshape(b, n, nc // n, h, w), dim=1)
        return mask.reshape(b, nc, h, w)

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        concat = torch.cat([feats[t] for t in self.tasks], dim=1)  # (B, N*c, h, w), task blocks
        shared = self.reduce(self.mask(self.masks(concat)) * concat)
        return {t: self.gates[t](shared) + feats[t] for t in self.tasks}


class SpatialAttention(nn.Module):
    """A source task's features through a 3x3 conv, gated by a sigmoid attention map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.value = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.attention(x)) * self.value(x)


class Distillation(nn.Module):
    """Multi-modal distillation: each task adds the attended features of every other task."""

    def __init__(self, tasks: list[str], channels: int) -> None:
        super().__init__()
        self.paths = nn.ModuleDict(
            {t: nn.ModuleDict({s: SpatialAttention(channels) for s in tasks if s != t}) for t in tasks}
        )

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for task, sources in self.paths.items():
            acc = feats[task]
            for source, path in sources.items():
                acc = acc + path(feats[source])
            out[task] = acc
        return out


class HRNetHead(nn.Sequential):
    """1x1 conv + BN + ReLU at the aggregated width, then a 1x1 conv to the task's channels."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 1), nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1)
        )


@register_decoder("mtinet")
class MTINetDecoder(Decoder):
    """MTI-Net over a four-level backbone (see the module docstring)."""

    def __init__(self, *args, fpm_softmax: str = "channel_groups", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ch, red = self.in_channels, self.reductions
        ok = len(ch) == NUM_SCALES and all(red[i + 1] == 2 * red[i] for i in range(NUM_SCALES - 1))
        if not ok:
            raise UserError(
                f"model.decoder: mtinet needs a backbone with {NUM_SCALES} levels whose strides "
                f"double (an HRNet: 1/4..1/32), got strides {red} (model.backbone, model.out_indices)"
            )
        tasks = list(self.task_channels)
        self.extra_level = 1
        inputs = list(ch)
        inputs[self.extra_level] += self.extra_channels
        self.initial = nn.ModuleList(
            [
                InitialPrediction(inputs[i] + (ch[i + 1] if i < NUM_SCALES - 1 else 0), ch[i], self.task_channels)
                for i in range(NUM_SCALES)
            ]
        )
        self.propagation = nn.ModuleList(
            [FeaturePropagation(tasks, ch[i], fpm_softmax) for i in range(1, NUM_SCALES)]
        )
        self.distillation = nn.ModuleList([Distillation(tasks, ch[i]) for i in range(NUM_SCALES)])
        self.aggregated = sum(ch)
        self.heads = self.make_heads(self.aggregated)
        if self.shared_features == "encoder":
            self.out_channels = sum(ch) + self.extra_channels
        else:
            self.out_channels = len(tasks) * self.aggregated

    def make_head(self, cin: int, cout: int) -> nn.Module:
        return HRNetHead(cin, cout)

    def prediction_layers(self, task: str) -> list[nn.Conv2d]:
        return [*super().prediction_layers(task), *(m.predict[task] for m in self.initial)]

    def forward(
        self,
        feats: list[torch.Tensor],
        image_size: tuple[int, int],
        extra: torch.Tensor | None = None,
    ) -> DecoderOutput:
        levels = list(feats)
        levels[self.extra_level] = self.with_extra(levels[self.extra_level], extra)
        inter: dict[str, torch.Tensor] = {}
        task_feats: list[dict[str, torch.Tensor]] = [{}] * NUM_SCALES
        propagated = None
        for i in reversed(range(NUM_SCALES)):
            task_feats[i], preds = self.initial[i](levels[i], propagated)
            stride = self.reductions[i]
            inter.update({f"{t}@{stride}": p for t, p in preds.items()})
            if i > 0:
                propagated = self.propagation[i - 1](task_feats[i])
        distilled = [self.distillation[i](task_feats[i]) for i in range(NUM_SCALES)]
        fine = tuple(distilled[0][next(iter(self.task_channels))].shape[-2:])
        aggregated = {
            t: torch.cat([resize(d[t], fine) for d in distilled], dim=1) for t in self.task_channels
        }
        heads = {t: resize(self.heads[t](aggregated[t]), image_size) for t in self.task_channels}
        size = scaled_size(image_size, self.shared_scale)
        if self.shared_features == "encoder":
            maps = [resize(x, size) for x in feats] + ([resize(extra, size)] if self.extra_channels else [])
        else:
            maps = [resize(aggregated[t], size) for t in self.task_channels]
        return DecoderOutput(heads, torch.cat(maps, dim=1), inter)
