"""Multi-task decoders: a registry of models with one file each (timm style).

``hps`` and ``fpn`` fuse the backbone levels into one map read by every task head;
``invpt`` (InvPT, ViT backbones) and ``mtinet`` (MTI-Net, HRNet backbones) are the base
models of the 3D-aware regularizer paper, with task-specific features and intermediate
predictions for deep supervision. The contract is in :mod:`.base`; :func:`build_decoder`
is the factory.
"""

from __future__ import annotations

from typing import Any

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


def build_decoder(name: str, *args: Any, **kwargs: Any) -> Decoder:
    """Instantiate the registered decoder ``name`` with the arguments of :class:`Decoder`
    (UserError naming ``model.decoder`` for an unknown name)."""
    if name not in DECODERS:
        raise UserError(f"model.decoder: unknown decoder {name!r} (known: {', '.join(list_decoders())})")
    return DECODERS[name](*args, **kwargs)


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
