"""check_buildable: every planned trial's model is built on the meta device."""

from __future__ import annotations

import pytest

from mtlsearch.config import load_config
from mtlsearch.errors import UserError
from mtlsearch.models import check_buildable


def test_buildable_configs_pass() -> None:
    small = {"model.decoder_width": 16, "regularizer.triplane_width": 8, "cvm.width": 16,
             "cvm.layers": 1, "cvm.heads": 2, "cvm.depth_planes": 8, "data.crop_size": [64, 80]}
    check_buildable(load_config(None, small))
    check_buildable(load_config(None, {**small, "cvm.enabled": True, "regularizer.enabled": True,
                                       "regularizer.ray_mode": "perspective",
                                       "regularizer.depth_mode": "expected",
                                       "regularizer.cross_view.enabled": True}))


def test_unbuildable_trial_is_a_user_error_naming_its_keys() -> None:
    trial = {"cvm.use_cost_volume": False, "cvm.use_features": False}
    cfg = load_config(None, {"cvm.enabled": True, **trial})
    with pytest.raises(UserError, match=r"trial cvm\.use_cost_volume=False, cvm\.use_features=False"):
        check_buildable(cfg, trial)
    with pytest.raises(UserError, match="config 'run'"):
        check_buildable(cfg)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_regularizer_is_checked_on_meta_in_every_precision(precision: str) -> None:
    """The regularizer turns autocast off for its float32 parts; on ``meta`` (no autocast
    there) the check must still build and run it."""
    cfg = load_config(None, {"model.decoder_width": 16, "regularizer.triplane_width": 8,
                             "regularizer.enabled": True, "train.precision": precision,
                             "data.crop_size": [32, 40]})
    check_buildable(cfg)
