"""Models: timm backbones, MTL decoders, the 3D-aware regularizer, the multi-task model.

One factory over registries (timm style): :func:`build_model` reads ``cfg.model``
(backbone by timm name, decoder from :data:`DECODERS`), ``cfg.regularizer``,
``cfg.aux_heads`` and ``cfg.cvm``.
"""

from mtlsearch.models.backbones import Backbone, build_backbone, load_pretrained
from mtlsearch.models.buildcheck import check_buildable
from mtlsearch.models.decoders import (
    DECODERS,
    Decoder,
    build_decoder,
    list_decoders,
    register_decoder,
)
from mtlsearch.models.losses import compute_losses
from mtlsearch.models.mtl import MultiTaskModel, build_model, count_parameters, task_channels
from mtlsearch.models.regularizer import TriplaneRegularizer, alpha_at, composite_weights

__all__ = [
    "DECODERS",
    "Backbone",
    "Decoder",
    "MultiTaskModel",
    "TriplaneRegularizer",
    "alpha_at",
    "build_backbone",
    "build_decoder",
    "build_model",
    "check_buildable",
    "composite_weights",
    "compute_losses",
    "count_parameters",
    "list_decoders",
    "load_pretrained",
    "register_decoder",
    "task_channels",
]
