"""The field's protocol details: boundary tolerance on the unpadded image, per-task
alpha_t, the render w_t switch and the edge loss's positive weight."""

from __future__ import annotations

import pytest
import torch

from mtlsearch.config import load_config
from mtlsearch.evaluate import update_metric
from mtlsearch.metrics import EdgeMetric
from mtlsearch.models.losses import compute_losses
from mtlsearch.models.regularizer import alpha_at
from mtlsearch.tasks import IGNORE, balanced_bce_loss


def _padded_edge_pair(h: int = 40, w: int = 60, pad: tuple[int, int] = (256, 256), shift: int = 2):
    """A vertical boundary and a prediction ``shift`` px beside it, padded like validation."""
    label = torch.full((1, 1, *pad), float(IGNORE))
    label[..., :h, :w] = 0.0
    label[..., 5 : h - 5, 30] = 1.0
    logits = torch.full((1, 1, *pad), -8.0)
    logits[..., 5 : h - 5, 30 + shift] = 8.0
    return logits, label


def test_edge_tolerance_uses_the_unpadded_diagonal() -> None:
    # 0.011 x diagonal: 0.79 px on the 40 x 60 image, 3.98 px on the 256 x 256 padding.
    logits, label = _padded_edge_pair()
    padded, cropped = EdgeMetric(max_dist=0.011, thresholds=5), EdgeMetric(max_dist=0.011, thresholds=5)
    padded.update(logits, label)
    update_metric(cropped, "edge", logits, label, torch.tensor([[40, 60]]))
    assert padded.compute()["odsf"] > 90.0  # the padded diagonal forgives a 2 px shift
    assert cropped.compute()["odsf"] < 10.0  # SEISM's tolerance on the real image does not
    exact, _ = _padded_edge_pair(shift=0)
    ok = EdgeMetric(max_dist=0.011, thresholds=5)
    update_metric(ok, "edge", exact, label, torch.tensor([[40, 60]]))
    assert ok.compute()["odsf"] > 90.0


def _cfg(**kw):
    base = {"tasks": {"semseg": 1.0, "depth": 2.0, "edge": 50.0}, "regularizer.enabled": True,
            "train.iterations": 100}
    return load_config(None, {**base, **kw})


def _outputs():
    g = torch.Generator().manual_seed(0)
    heads = {"semseg": torch.randn(2, 12, 8, 8, generator=g), "depth": torch.rand(2, 1, 8, 8, generator=g) + 1,
             "edge": torch.randn(2, 1, 8, 8, generator=g)}
    renders = {k: v.clone() * 0.5 for k, v in heads.items()}
    labels = {"semseg": torch.randint(0, 12, (2, 8, 8), generator=g),
              "depth": torch.rand(2, 1, 8, 8, generator=g) * 3 + 0.5,
              "edge": (torch.rand(2, 1, 8, 8, generator=g) > 0.8).float()}
    return {"heads": heads, "renders": renders}, labels


def test_per_task_alpha_and_render_task_weights() -> None:
    cfg = _cfg(**{"regularizer.alpha.per_task": {"depth": 8.0}, "regularizer.alpha.max": 4.0})
    assert alpha_at(25, cfg) == pytest.approx(2.0) and alpha_at(25, cfg, "depth") == pytest.approx(4.0)
    assert alpha_at(25, cfg, "semseg") == pytest.approx(2.0)
    out, labels = _outputs()
    alphas = {t: alpha_at(25, cfg, t) for t in cfg.task_names}
    total, parts = compute_losses(out, labels, cfg, alphas)
    w = cfg.tasks
    heads = sum(w[t] * parts[f"loss_{t}"] for t in w)
    renders = sum(alphas[t] * w[t] * parts[f"loss_render_{t}"] for t in w)
    assert torch.isclose(total, heads + renders, rtol=1e-5)
    off = load_config(cfg.to_dict(), {"regularizer.render_task_weights": False})
    total_off, _ = compute_losses(out, labels, off, alphas)
    renders_off = sum(alphas[t] * parts[f"loss_render_{t}"] for t in w)
    assert torch.isclose(total_off, heads + renders_off, rtol=1e-5)
    assert not torch.isclose(total, total_off)


def test_edge_pos_weight_is_configurable() -> None:
    out, labels = _outputs()
    pred, label = out["heads"]["edge"], labels["edge"]
    for weight in (0.95, 0.8):
        cfg = _cfg(**{"loss.edge_pos_weight": weight, "regularizer.enabled": False})
        _, parts = compute_losses({"heads": {"edge": pred}}, {"edge": label}, cfg, 0.0)
        assert torch.isclose(parts["loss_edge"], balanced_bce_loss(weight)(pred, label))
    y = label.flatten()
    p = torch.sigmoid(pred.flatten())
    by_hand = -(0.8 * y * p.log() + 0.2 * (1 - y) * (1 - p).log()).mean()
    assert torch.isclose(balanced_bce_loss(0.8)(pred, label), by_hand, rtol=1e-4)
    with pytest.raises(Exception, match="edge_pos_weight"):
        _cfg(**{"loss.edge_pos_weight": 1.5})


def test_partial_single_task_baselines_are_refused_at_load() -> None:
    with pytest.raises(Exception, match="no single-task baseline for depth, edge"):
        _cfg(**{"eval.baselines": {"semseg": {"miou": 40.0}}})
    full = {"semseg": {"miou": 40.0}, "depth": {"rmse": 0.5}, "edge": {"odsf": 70.0}}
    assert _cfg(**{"eval.baselines": full}).eval.baselines == full
