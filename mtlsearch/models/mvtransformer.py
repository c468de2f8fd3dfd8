"""The multi-view transformer of the cross-view module: self- then cross-attention in
Swin-style shifted local windows with 2D sine position encoding.

Contract: :class:`MultiViewTransformer` maps (B, V, C, H, W) features of V views to
features of the same shape; each view cross-attends to its nearest views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------
# Multi-view transformer
# ---------------------------------------------------------------------------


def sine_position_encoding(
    h: int, w: int, channels: int, device: torch.device | None = None
) -> torch.Tensor:
    """DETR-style normalised 2D sine encoding (channels, h, w): half y, half x.

    ``channels`` must be divisible by 4 (sin/cos pairs per axis).
    """
    npf = channels // 2
    y = (torch.arange(1, h + 1, device=device, dtype=torch.float32) / (h + 1e-6)) * 2 * math.pi
    x = (torch.arange(1, w + 1, device=device, dtype=torch.float32) / (w + 1e-6)) * 2 * math.pi
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    py = y[:, None] / dim_t  # (h, npf)
    px = x[:, None] / dim_t  # (w, npf)
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    pos_y = py.t()[:, :, None].expand(npf, h, w)
    pos_x = px.t()[:, None, :].expand(npf, h, w)
    return torch.cat([pos_y, pos_x], dim=0)


def _partition(x: torch.Tensor, splits: int) -> torch.Tensor:
    """(N, H, W, C) -> (N, splits^2, H*W/splits^2, C) non-overlapping windows."""
    N, H, W, C = x.shape
    wh, ww = H // splits, W // splits
    x = x.view(N, splits, wh, splits, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, splits * splits, wh * ww, C)


def _merge(x: torch.Tensor, splits: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`_partition`."""
    N, _, _, C = x.shape
    wh, ww = H // splits, W // splits
    x = x.view(N, splits, splits, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(N, H, W, C)


def _window_mask(
    H: int, W: int, valid_h: int, valid_w: int, splits: int, shift: tuple[int, int],
    device: torch.device, dtype: torch.dtype,
) -> torch.Tensor | None:
    """Additive attention mask (nW, T, T) for (possibly shifted) windows of an H x W map
    padded from valid_h x valid_w: tokens of different Swin regions or padded keys are
    masked with a large negative number (finite, so no row is ever all -inf)."""
    sh, sw = shift
    if (sh, sw) == (0, 0) and (valid_h, valid_w) == (H, W):
        return None
    wh, ww = H // splits, W // splits
    region = torch.zeros(H, W, device=device)
    if (sh, sw) != (0, 0):
        count = 0
        for hs in (slice(0, H - wh), slice(H - wh, H - sh), slice(H - sh, H)):
            for ws in (slice(0, W - ww), slice(W - ww, W - sw), slice(W - sw, W)):
                region[hs, ws] = count
                count += 1
    valid = torch.zeros(H, W, device=device)
    valid[:valid_h, :valid_w] = 1.0
    valid = torch.roll(valid, shifts=(-sh, -sw), dims=(0, 1))
    region_w = _partition(region[None, :, :, None], splits)[0, :, :, 0]  # (nW, T)
    valid_w_ = _partition(valid[None, :, :, None], splits)[0, :, :, 0]
    blocked = (region_w[:, :, None] != region_w[:, None, :]) | (valid_w_[:, None, :] < 0.5)
    mask = torch.zeros(blocked.shape, device=device, dtype=dtype)
    return mask.masked_fill(blocked, torch.finfo(dtype).min / 4)


class _AttentionLayer(nn.Module):
    """UniMatch transformer layer: multi-head attention, merge, LayerNorm, optional
    FFN on ``concat(x, message)``; residual ``x + message``."""

    def __init__(self, dim: int, heads: int, ffn_expansion: int | None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.merge = nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn: nn.Module | None = None
        if ffn_expansion:
            hidden = 2 * dim * ffn_expansion
            self.ffn = nn.Sequential(
                nn.Linear(2 * dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False)
            )
            self.norm2 = nn.LayerNorm(dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        *lead, T, C = x.shape
        return x.view(*lead, T, self.heads, C // self.heads).transpose(-2, -3)

    def forward(self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (N, nW, T, C), kv (N, nW, Tk, C), mask (nW, T, Tk) or None."""
        q, k, v = self._split(self.q(x)), self._split(self.k(kv)), self._split(self.v(kv))
        attn_mask = None if mask is None else mask[:, None]
        msg = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        msg = self.norm1(self.merge(msg.transpose(-2, -3).flatten(-2)))
        if self.ffn is not None:
            msg = self.norm2(self.ffn(torch.cat([x, msg], dim=-1)))
        return x + msg


class _TransformerBlock(nn.Module):
    """Self-attention within each view's windows, then cross-attention from each view's
    windows to the same windows of its neighbour views (with FFN)."""

    def __init__(self, dim: int, heads: int, ffn_expansion: int) -> None:
        super().__init__()
        self.self_attn = _AttentionLayer(dim, heads, None)
        self.cross_attn = _AttentionLayer(dim, heads, ffn_expansion)

    def forward(self, x: torch.Tensor, nbr: torch.Tensor, mask: torch.Tensor | None,
                cross_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, V, nW, T, C) windows; nbr (B, V, k) neighbour indices."""
        B, V, nW, T, C = x.shape
        flat = x.reshape(B * V, nW, T, C)
        flat = self.self_attn(flat, flat, mask)
        x = flat.view(B, V, nW, T, C)
        k = nbr.shape[-1]
        bidx = torch.arange(B, device=x.device)[:, None, None]
        kv = x[bidx, nbr]  # (B, V, k, nW, T, C)
        kv = kv.permute(0, 1, 3, 2, 4, 5).reshape(B * V, nW, k * T, C)
        flat = self.cross_attn(x.reshape(B * V, nW, T, C), kv, cross_mask)
        return flat.view(B, V, nW, T, C)


class MultiViewTransformer(nn.Module):
    """``layers`` blocks of windowed self- then cross-view attention over (B, V, C, h, w)."""

    def __init__(self, dim: int, layers: int, heads: int, splits: int, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.splits = splits
        self.blocks = nn.ModuleList(
            _TransformerBlock(dim, heads, ffn_expansion) for _ in range(layers)
        )

    def forward(self, feats: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
        """feats (B, V, C, h, w), nbr (B, V, k) -> transformed features (B, V, C, h, w)."""
        B, V, C, h, w = feats.shape
        s = self.splits
        x = feats + sine_position_encoding(h, w, C, feats.device).to(feats.dtype)
        Hp, Wp = -(-h // s) * s, -(-w // s) * s
        x = x.flatten(0, 1).permute(0, 2, 3, 1)  # (BV, h, w, C)
        if (Hp, Wp) != (h, w):
            x = F.pad(x, (0, 0, 0, Wp - w, 0, Hp - h))
        wh, ww = Hp // s, Wp // s
        half = (wh // 2, ww // 2) if s > 1 else (0, 0)
        k = nbr.shape[-1]
        masks = {}
        for shifted in (False, True):
            shift = half if shifted else (0, 0)
            m = _window_mask(Hp, Wp, h, w, s, shift, x.device, x.dtype)
            masks[shifted] = (m, None if m is None else m.repeat(1, 1, k))
        for i, block in enumerate(self.blocks):
            shifted = i % 2 == 1 and half != (0, 0)
            if shifted:
                x = torch.roll(x, shifts=(-half[0], -half[1]), dims=(1, 2))
            win = _partition(x, s).view(B, V, s * s, wh * ww, C)
            win = block(win, nbr, *masks[shifted])
            x = _merge(win.view(B * V, s * s, wh * ww, C), s, Hp, Wp)
            if shifted:
                x = torch.roll(x, shifts=half, dims=(1, 2))
        x = x[:, :h, :w].permute(0, 3, 1, 2)
        return x.reshape(B, V, C, h, w)
