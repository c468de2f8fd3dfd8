"""Multi-task decoders: a registry of models with one file each (timm style).

``hps`` and ``fpn`` fuse the backbone levels into one map read by every task head;
``invpt`` (InvPT, ViT backbones) and ``mtinet`` (MTI-Net, HRNet backbones) are the base
models of the 3D-aware regularizer paper, with task-specific features and intermediate
predictions for deep supervision. The contract is in :mod:`.base`; :func:`build_decoder`
is the factory.
"""

from __future__ import annotations

from mtlsearch.errors import UserError
from mtlsearch.models.decoders import fpn, hps, invpt, mtinet  # noqa: F401  (register)
from mtlsearch.models.decoders.base import (
    DECODERS,
    SHARED_FEATURES,
    Decoder,
    DecoderOutput,
    FusedDecoder,
    conv_bn_relu,
    list_decoders,
    make_head,
    register_decoder,
)


def build_decoder(
    name: str,
    in_channels: list[int],
    reductions: list[int],
    task_channels: dict[str, int],
    width: int,
    stride: int,
    extra_channels: int = 0,
    shared_features: str = "encoder",
    shared_scale: float = 0.125,
) -> Decoder:
    """Instantiate the registered decoder ``name`` (UserError naming ``model.decoder``)."""
    if name not in DECODERS:
        raise UserError(f"model.decoder: unknown decoder {name!r} (known: {', '.join(list_decoders())})")
    if width <= 0:
        raise UserError(f"model.decoder_width: must be positive, got {width}")
    return DECODERS[name](
        in_channels, reductions, task_channels, width, stride, extra_channels,
        shared_features=shared_features, shared_scale=shared_scale,
    )


__all__ = [
    "DECODERS",
    "SHARED_FEATURES",
    "Decoder",
    "DecoderOutput",
    "FusedDecoder",
    "build_decoder",
    "conv_bn_relu",
    "list_decoders",
    "make_head",
    "register_decoder",
]
