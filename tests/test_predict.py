"""Single-image inference of a multi-view (cross-view module) model from its checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mtlsearch.checkpoint import save_checkpoint
from mtlsearch.cli import main
from mtlsearch.config import load_config
from mtlsearch.models import build_model

TINY = {
    "model.decoder_width": 16,
    "cvm.enabled": True, "cvm.layers": 1, "cvm.width": 32, "cvm.heads": 2,
    "cvm.depth_planes": 8, "cvm.chunk_planes": 4,
    "regularizer.enabled": True, "regularizer.samples_per_ray": 4,
    "regularizer.triplane_width": 8, "regularizer.hidden": 8,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    cfg = load_config(None, TINY)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt"), model=model, optimizer=opt,
                           scheduler=sched, step=7, config=cfg.to_dict())
    return path, model.eval(), cfg


def test_predict_cli_writes_maps_at_image_size(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    rng = np.random.default_rng(0)
    image = tmp_path / "room.png"
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(image)
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(path), str(image), "--out", str(tmp_path / "pred")])
    assert exc.value.code == 0
    assert "single view (duplicated, identity pose)" in capsys.readouterr().out
    maps = np.load(tmp_path / "pred" / "room.npz")
    assert maps["semseg"].shape == (50, 70) and maps["semseg"].max() < 12
    assert maps["depth"].shape == (50, 70) and np.isfinite(maps["depth"]).all()
    np.testing.assert_allclose(np.linalg.norm(maps["normals"], axis=-1), 1.0, atol=1e-5)
    assert ((maps["edge"] >= 0) & (maps["edge"] <= 1)).all()
    assert (tmp_path / "pred" / "room.png").stat().st_size > 0


def test_single_view_equals_explicitly_duplicated_view(checkpoint):
    """A multi-view model fed one image behaves as if given the image twice at identity."""
    _, model, _ = checkpoint
    exported = model.export()
    torch.manual_seed(1)
    image = torch.randn(1, 3, 64, 64)
    K = torch.tensor([[[64.0, 0, 31.5], [0, 64.0, 31.5], [0, 0, 1]]])
    alone = exported(image, K=K)["heads"]
    twice = exported(image, src_images=image[:, None], K=K, src_K=K[:, None],
                     rel_pose=torch.eye(4)[None, None])["heads"]
    for task in alone:
        torch.testing.assert_close(alone[task], twice[task])
    # A real second view changes the cross-view features, hence the prediction.
    other = exported(image, src_images=torch.randn(1, 1, 3, 64, 64), K=K, src_K=K[:, None],
                     rel_pose=torch.eye(4)[None, None])["heads"]
    assert not torch.allclose(alone["depth"], other["depth"])


def test_missing_image_is_a_user_error(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(path), str(tmp_path / "nope.png"), "--out", str(tmp_path / "p")])
    assert exc.value.code == 2
    assert "nope.png" in capsys.readouterr().err
