"""The multi-task model: backbone -> (cross-view module) -> decoder -> task heads,
plus the training-only 3D-aware regularizer and Table-4 auxiliary heads.

The decoder (``model.decoder``: hps, fpn, invpt, mtinet) returns the task predictions,
the shared feature map f that the regularizer and the auxiliary heads read, and, for
invpt and mtinet, intermediate predictions (deep supervision, ``out["inter"]``).

Built by :func:`build_model`; :meth:`MultiTaskModel.export` returns the inference model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from mtlsearch.config import Config
from mtlsearch.errors import UserError
from mtlsearch.models.backbones import build_backbone
from mtlsearch.models.decoders import build_decoder
from mtlsearch.models.decoders.base import last_conv
from mtlsearch.models.regularizer import TriplaneRegularizer
from mtlsearch.tasks import get_task


def task_channels(cfg: Config, num_classes: dict[str, int] | None = None) -> dict[str, int]:
    """Output channels per configured task; class counts from ``num_classes`` or the layout."""
    return {task: get_task(task).channels(cfg.data.layout, num_classes) for task in cfg.task_names}


class MultiTaskModel(nn.Module):
    """Shared encoder + MTL decoder with one head per task.

    Training-only parts (dropped by :meth:`export`): ``regularizer`` (when
    ``regularizer.enabled``; renders ``cfg.rendered_tasks``) and ``aux_heads`` (when
    ``aux_heads.enabled``). The cross-view module (``cvm.enabled``) is part of inference.
    """

    def __init__(self, cfg: Config, num_classes: dict[str, int] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.task_channels = task_channels(cfg, num_classes)
        self.backbone = build_backbone(cfg.model, image_size=tuple(cfg.data.crop_size))
        self.cvm: nn.Module | None = None
        extra = 0
        if cfg.cvm.enabled:
            from mtlsearch.models.crossview import CrossViewModule

            self.cvm = CrossViewModule(cfg.cvm)
            extra = int(self.cvm.out_channels)
        self.decoder = build_decoder(
            cfg.model.decoder,
            self.backbone.channels,
            self.backbone.reductions,
            self.task_channels,
            cfg.model.decoder_width,
            cfg.model.decoder_stride,
            extra,
            shared_features=cfg.model.shared_features,
            shared_scale=cfg.regularizer.render_scale,
            **({"fpm_softmax": cfg.model.mtinet_fpm_softmax} if cfg.model.decoder == "mtinet" else {}),
        )
        self.regularizer: TriplaneRegularizer | None = None
        rendered = cfg.rendered_tasks
        if rendered:
            self.regularizer = TriplaneRegularizer(
                self.decoder.out_channels, {t: self.task_channels[t] for t in rendered}, cfg.regularizer
            )
        self.aux_heads: nn.ModuleDict | None = (
            self.decoder.make_heads() if cfg.aux_heads.enabled else None
        )
        self._init_output_biases(cfg)

    @torch.no_grad()
    def _init_output_biases(self, cfg: Config) -> None:
        """Start every output of a task that asks for it (``TaskSpec.output_bias``, e.g.
        depth at ``model.depth_init`` metres) at that value: heads, intermediate
        predictions, aux head and the rendered field's value channels."""
        for task, channels in self.task_channels.items():
            value = get_task(task).output_bias(cfg.model)
            if value is None:
                continue
            layers = self.decoder.prediction_layers(task)
            if self.aux_heads is not None:
                layers.append(last_conv(self.aux_heads[task]))
            for layer in layers:
                layer.bias.fill_(value)
            if self.regularizer is not None and task in self.regularizer.fields:
                last = self.regularizer.fields[task][-1]
                last.bias[-channels:].fill_(value)

    @property
    def tasks(self) -> list[str]:
        return list(self.task_channels)

    def forward(
        self,
        image: torch.Tensor,
        *,
        src_images: torch.Tensor | None = None,
        K: torch.Tensor | None = None,
        src_K: torch.Tensor | None = None,
        rel_pose: torch.Tensor | None = None,
        render_poses: torch.Tensor | None = None,
        render_K: torch.Tensor | None = None,
        render: bool | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Predict every task for ``image`` (B, 3, H, W).

        Returns ``{"heads": {task: (B, C, H, W)}}``, ``"inter"`` (the decoder's
        intermediate predictions ``{"<task>@<stride>": (B, C, H / stride, W / stride)}``, when
        it has them) plus, when the regularizer exists,
        ``"renders"`` (if ``render``, default ``self.training``) and ``"renders_xview"``
        (if ``render_poses`` (B, 4, 4), the second view's I'-from-I pose, is given, with
        that view's intrinsics ``render_K``, default ``K``), and ``"aux"`` when auxiliary
        heads exist. ``K`` is also the renders' intrinsics (``regularizer.ray_mode:
        perspective``).
        """
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        size = (int(image.shape[-2]), int(image.shape[-1]))
        extra = None
        if self.cvm is not None:
            extra = self.cvm(image, src_images, K, src_K, rel_pose)
        feats = self.backbone(image)
        heads, f, inter = self.decoder(feats, size, extra)
        out: dict[str, dict[str, torch.Tensor]] = {"heads": heads}
        if inter:
            out["inter"] = inter
        if self.aux_heads is not None:
            out["aux"] = self.decoder.apply_heads(self.aux_heads, f, size)
        if render_poses is not None and self.regularizer is None:
            raise UserError("render_poses given but the model has no regularizer (regularizer.enabled)")
        if self.regularizer is not None:
            want = self.training if render is None else render
            if want or render_poses is not None:
                planes = self.regularizer.encode(f)
                if want:
                    out["renders"] = self.regularizer.render(planes, size, K=K)
                if render_poses is not None:
                    out["renders_xview"] = self.regularizer.render(
                        planes, size, render_poses, K=K, render_K=render_K
                    )
        return out

    def export(self) -> MultiTaskModel:
        """The inference model (eval mode): a copy without the regularizer and aux heads.

        Its parameters and outputs equal those of the same config built with
        ``regularizer.enabled=false`` and ``aux_heads.enabled=false`` and these weights.
        """
        cfg = self.cfg.model_copy(
            update={
                "regularizer": self.cfg.regularizer.model_copy(update={"enabled": False}),
                "aux_heads": self.cfg.aux_heads.model_copy(update={"enabled": False}),
            }
        )
        reg, aux = self.regularizer, self.aux_heads
        self.regularizer, self.aux_heads = None, None
        try:
            exported = copy.deepcopy(self)
        finally:
            self.regularizer, self.aux_heads = reg, aux
        exported.cfg = cfg
        return exported.eval()


def build_model(cfg: Config, num_classes: dict[str, int] | None = None) -> MultiTaskModel:
    """The single model factory: backbone, decoder, heads and training-only parts from ``cfg``.

    ``num_classes`` overrides class counts per task (default: ``NUM_CLASSES[cfg.data.layout]``).
    ``model.weights`` (a full-model state_dict) is loaded last, strictly.
    """
    model = MultiTaskModel(cfg, num_classes)
    if cfg.model.weights:
        from mtlsearch.models.weights import load_full_weights

        load_full_weights(model, cfg.model.weights, cfg.task_names)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
