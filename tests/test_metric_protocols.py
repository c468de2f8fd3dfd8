"""The official evaluators' protocols (issue 21) against hand-computed values, and the
previous behaviours behind their ``eval`` keys.

Each expected number below is worked out by hand in the comments; every test also checks
that the two protocols give different numbers, so a protocol silently ignored fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from mtlsearch.config import Config, EvalConfig
from mtlsearch.metrics import DepthMetric, SaliencyMetric, SegMetric, build_metrics, delta_m
from mtlsearch.tasks import TASKS, metric_directions

# ---------------------------------------------------------------------------
# mIoU with classes absent from the split
# ---------------------------------------------------------------------------

# 5 classes. The last pixel is ignored (label 255): its prediction 3 does not count, so
# class 3 occurs nowhere. Class 4 is only predicted (one false positive).
ABSENT_TARGET = torch.tensor([[[0, 0, 1], [1, 2, 255]]])
ABSENT_PRED = torch.tensor([[[0, 1, 1], [4, 2, 3]]])
# valid (label, pred): (0,0) (0,1) (1,1) (1,4) (2,2)
#   class 0: tp 1, fp 0, fn 1 -> 1/2
#   class 1: tp 1, fp 1, fn 1 -> 1/3
#   class 2: tp 1, fp 0, fn 0 -> 1
#   class 3: tp + fp + fn = 0 -> 0 official (tp / max(0, 1e-8)); left out by "present"
#   class 4: tp 0, fp 1, fn 0 -> 0 in both
MIOU_ALL = 100 * (1 / 2 + 1 / 3 + 1 + 0 + 0) / 5  # 36.666...
MIOU_PRESENT = 100 * (1 / 2 + 1 / 3 + 1 + 0) / 4  # 45.833...


def test_miou_absent_classes_count_as_zero_officially() -> None:
    official = SegMetric(5)
    official.update(ABSENT_PRED, ABSENT_TARGET)
    out = official.compute()
    assert out["miou"] == pytest.approx(36.6666667)
    assert out["miou"] == pytest.approx(MIOU_ALL)
    assert out["pixel_acc"] == pytest.approx(60.0)  # 3 of 5 valid pixels

    present = SegMetric(5, classes="present")
    present.update(ABSENT_PRED, ABSENT_TARGET)
    assert present.compute()["miou"] == pytest.approx(45.8333333)
    assert present.compute()["miou"] == pytest.approx(MIOU_PRESENT)
    assert present.compute()["pixel_acc"] == out["pixel_acc"]


def test_miou_protocols_agree_when_every_class_occurs() -> None:
    # classes 0..2 all occur: no absent class, so both protocols give (1/2 + 1/3 + 1) / 3
    target = torch.tensor([[[0, 0, 1, 1, 2]]])
    pred = torch.tensor([[[0, 1, 1, 2, 2]]])
    # class 0: tp 1 fn 1 -> 1/2; class 1: tp 1 fp 1 fn 1 -> 1/3; class 2: tp 1 fp 1 -> 1/2
    expected = 100 * (1 / 2 + 1 / 3 + 1 / 2) / 3
    for classes in ("all", "present"):
        m = SegMetric(3, classes=classes)
        m.update(pred, target)
        assert m.compute()["miou"] == pytest.approx(expected)


def test_miou_protocol_is_split_level() -> None:
    # Image A holds classes 0 and 1, image B class 2: split-level confusion, so no class
    # is absent from the split although each image lacks some.
    m = SegMetric(3)
    m.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    m.update(torch.tensor([[[2, 2]]]), torch.tensor([[[2, 2]]]))
    assert m.compute()["miou"] == pytest.approx(100.0)
    m.reset()
    assert math.isnan(m.compute()["miou"])  # nothing accumulated
    with pytest.raises(ValueError, match="classes"):
        SegMetric(3, classes="seen")


# ---------------------------------------------------------------------------
# Depth: clamping, log RMSE, sq rel
# ---------------------------------------------------------------------------

NEG_PRED = torch.tensor([-1.0, 2.0, 3.0, 5.0]).reshape(1, 1, 2, 2)
NEG_TARGET = torch.tensor([1.0, 2.0, 4.0, 0.0]).reshape(1, 1, 2, 2)  # last pixel invalid
LOG_TERM = (math.log(1e-9) - math.log(1.0)) ** 2 + 0.0 + (math.log(3.0) - math.log(4.0)) ** 2
# = 20.72327^2 + 0.28768^2 = 429.4537 + 0.0828: the negative prediction floored at 1e-9


def test_depth_negative_prediction_clamped_officially() -> None:
    # clamped (default): predictions 1e-9, 2, 3 against 1, 2, 4 -> errors ~-1, 0, -1
    m = DepthMetric()
    m.update(NEG_PRED, NEG_TARGET)
    out = m.compute()
    assert out["rmse"] == pytest.approx(math.sqrt(2 / 3), rel=1e-7)  # 0.816497
    assert out["abs_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3, rel=1e-7)  # 0.416667
    assert out["sq_rel"] == pytest.approx((1 / 1 + 0 + 1 / 4) / 3, rel=1e-7)  # 0.416667
    assert out["log_rmse"] == pytest.approx(math.sqrt(LOG_TERM / 3))
    assert out["log_rmse"] == pytest.approx(11.96574, abs=1e-5)

    # raw (eval.depth_clamp: false): errors -2, 0, -1
    raw = DepthMetric(clamp=False)
    raw.update(NEG_PRED, NEG_TARGET)
    got = raw.compute()
    assert got["rmse"] == pytest.approx(math.sqrt(5 / 3))  # 1.290994
    assert got["abs_rel"] == pytest.approx((2 / 1 + 0 + 1 / 4) / 3)  # 0.75
    assert got["sq_rel"] == pytest.approx((4 / 1 + 0 + 1 / 4) / 3)  # 1.416667
    assert got["log_rmse"] == pytest.approx(out["log_rmse"])  # always floored at 1e-9


def test_depth_log_rmse_and_sq_rel_by_hand() -> None:
    # image A: predictions 2, 2, 2 against 1, 2, 4 (and one invalid pixel)
    #   log errors ln 2, 0, -ln 2; squared errors 1, 0, 4 -> over t: 1, 0, 1
    # image B: prediction e against 1 -> log error 1; squared error (e - 1)^2 over t = 1
    m = DepthMetric()
    m.update(torch.tensor([[[[2.0, 2.0], [2.0, 7.0]]]]), torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]]]))
    first = m.compute()
    assert first["log_rmse"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))  # 0.565945
    assert first["sq_rel"] == pytest.approx(2 / 3)
    assert first["rmse"] == pytest.approx(math.sqrt(5 / 3))
    e = math.e
    m.update(torch.tensor([[[[e]]]]), torch.tensor([[[[1.0]]]]))
    both = m.compute()
    # split level: sums over the 4 valid pixels, not the mean of the two images' values
    assert both["log_rmse"] == pytest.approx(math.sqrt((2 * math.log(2) ** 2 + 1) / 4))  # 0.6525
    assert both["sq_rel"] == pytest.approx((1 + 0 + 1 + (e - 1) ** 2) / 4)  # 1.2381
    per_image_mean = (math.log(2) * math.sqrt(2 / 3) + 1.0) / 2
    assert abs(both["log_rmse"] - per_image_mean) > 0.05  # 0.7002 vs 0.7830


def test_depth_metrics_registered_with_directions() -> None:
    directions = metric_directions()
    assert directions["depth_log_rmse"] == "min"
    assert directions["depth_sq_rel"] == "min"
    assert TASKS["depth"].metric == "rmse"  # the primary metric, hence delta_m, is unchanged
    assert DepthMetric.names == tuple(TASKS["depth"].metrics)
    # delta_m over the primary keys ignores the extra depth metrics in the results
    results = {"semseg_miou": 44.0, "depth_rmse": 0.6, "depth_log_rmse": 9.0, "depth_sq_rel": 9.0}
    assert delta_m(results, {"semseg_miou": 40.0, "depth_rmse": 0.5}) == pytest.approx((10.0 - 20.0) / 2)
    # and a baseline naming them weighs them as "lower is better" inside depth's one term
    both = delta_m({**results, "depth_sq_rel": 0.09}, {"semseg_miou": 40.0, "depth_sq_rel": 0.1})
    assert both == pytest.approx((10.0 + 10.0) / 2)


# ---------------------------------------------------------------------------
# Saliency: ATRC's protocol vs InvPT's second sigmoid
# ---------------------------------------------------------------------------

# One salient pixel (0.97) and two background pixels (0.90, 0.12).
SAL_PROB = torch.tensor([0.97, 0.90, 0.12]).reshape(1, 1, 1, 3)
SAL_TARGET = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 1, 1, 3)


def test_saliency_invpt_protocol_differs_from_atrc() -> None:
    # ATRC: threshold 0.95 keeps only 0.97 -> P = R = 1, F = 1.
    atrc = SaliencyMetric(from_logits=False)
    atrc.update(SAL_PROB, SAL_TARGET)
    assert atrc.compute()["maxf"] == pytest.approx(100.0)

    # InvPT: sigmoid(0.97) = 0.7251, sigmoid(0.90) = 0.7109, sigmoid(0.12) = 0.5300.
    # Thresholds <= 0.50 keep all three (P = 1/3, R = 1: F = 1.3/3 / 1.1 = 0.3939);
    # 0.55..0.70 keep 0.97 and 0.90 (P = 1/2, R = 1: F = 0.65 / 1.15 = 0.5652);
    # >= 0.75 keep none (F = 0). The two top pixels can no longer be told apart.
    invpt = SaliencyMetric(from_logits=False, protocol="invpt")
    invpt.update(SAL_PROB, SAL_TARGET)
    assert invpt.compute()["maxf"] == pytest.approx(100 * 0.65 / 1.15)  # 56.5217

    # the same from logits (the heads' output), through build_metrics and eval.sal_protocol
    built = build_metrics(["sal"], cfg_eval=EvalConfig(sal_protocol="invpt"))["sal"]
    built.update(torch.logit(SAL_PROB), SAL_TARGET)
    assert built.compute()["maxf"] == pytest.approx(100 * 0.65 / 1.15)
    assert build_metrics(["sal"])["sal"].protocol == "atrc"
    with pytest.raises(ValueError, match="protocol"):
        SaliencyMetric(protocol="seism")


def test_saliency_invpt_thresholds_collapse() -> None:
    # sigmoid maps [0, 1] into [0.5, 0.731]: of the 19 thresholds, 0.05..0.50 keep every
    # pixel and 0.75..0.95 none, so at most 6 distinct predicted-positive counts remain
    # (everything, 0.55, 0.60, 0.65, 0.70, nothing), against 19 under ATRC's protocol.
    prob = torch.linspace(0.0, 1.0, 1001).reshape(1, 1, 1, 1001)
    target = (prob > 0.5).float()
    atrc = SaliencyMetric(from_logits=False)
    invpt = SaliencyMetric(from_logits=False, protocol="invpt")
    atrc.update(prob, target)
    invpt.update(prob, target)
    counts = invpt.state["pred_pos"]
    assert torch.all(counts[:10] == 1001) and torch.all(counts[14:] == 0)
    assert len(torch.unique(counts)) == 6
    assert len(torch.unique(atrc.state["pred_pos"])) == 19
    # prob = k / 1000 passes t when k / 1000 >= logit(t): logit(0.55) = 0.2007 -> k >= 201
    # (800 pixels), logit(0.60) = 0.4055 -> 595, logit(0.65) = 0.6190 -> 381,
    # logit(0.70) = 0.8473 -> 153. Best: 0.65, all 381 salient of the 500 salient pixels
    # (k > 500): P = 1, R = 0.762, F = 1.3 * 0.762 / (0.3 + 0.762) = 0.93277.
    assert counts[10:14].tolist() == [800, 595, 381, 153]
    assert invpt.compute()["maxf"] == pytest.approx(100 * 1.3 * 0.762 / 1.062)  # 93.2768
    assert atrc.compute()["maxf"] > 99.8  # threshold 0.50 splits the two halves


# ---------------------------------------------------------------------------
# Config keys
# ---------------------------------------------------------------------------


def test_eval_keys_default_to_the_official_protocols_and_reach_the_metrics() -> None:
    cfg = EvalConfig()
    assert (cfg.miou_classes, cfg.depth_clamp, cfg.sal_protocol) == ("all", True, "atrc")
    legacy = EvalConfig(miou_classes="present", depth_clamp=False, sal_protocol="invpt")
    ms = build_metrics(["semseg", "parts", "depth", "sal"], cfg_eval=legacy)
    assert ms["semseg"].classes == ms["parts"].classes == "present"
    assert ms["depth"].clamp is False
    assert ms["sal"].protocol == "invpt"
    ms["depth"].update(NEG_PRED, NEG_TARGET)
    assert ms["depth"].compute()["rmse"] == pytest.approx(math.sqrt(5 / 3))
    official = build_metrics(["semseg", "depth"], {"semseg": 5}, Config().eval)
    official["semseg"].update(ABSENT_PRED, ABSENT_TARGET)
    assert official["semseg"].compute()["miou"] == pytest.approx(MIOU_ALL)
    for key, bad in (("miou_classes", "seen"), ("depth_clamp", 1), ("sal_protocol", "mtl")):
        with pytest.raises(ValidationError):
            EvalConfig(**{key: bad})
