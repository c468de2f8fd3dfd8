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


def _predict(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["predict", *argv])
    return exc.value.code, capsys.readouterr().err


def test_bad_checkpoints_are_one_error_line(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    image = tmp_path / "room.png"
    Image.new("RGB", (40, 30)).save(image)
    state = torch.load(path, weights_only=True)
    good = path.read_bytes()
    bad = tmp_path / "bad.pt"
    first = next(iter(state["model"]))
    cases = [
        (b"", "not a readable checkpoint"),
        (b"\x00garbage" * 50, "not a readable checkpoint"),
        (good[: len(good) // 2], "not a readable checkpoint"),
        ([1, 2], "not an mtlsearch checkpoint"),
        ({k: v for k, v in state.items() if k != "model"}, "no model entry"),
        ({**state, "model": {**state["model"], first: torch.zeros(1)}}, "do not fit the model"),
        ({**state, "config": {**state["config"], "train": {"lr": "fast"}}}, "train.lr"),
        ({**state, "num_classes": {"semseg": -1}}, "num_classes"),
    ]
    for content, message in cases:
        if isinstance(content, bytes):
            bad.write_bytes(content)
        else:
            torch.save(content, bad)
        code, err = _predict(capsys, str(bad), str(image), "--out", str(tmp_path / "p"))
        assert code == 2 and message in err and str(bad) in err and err.count("\n") == 1, err
    assert not (tmp_path / "p").exists()


def test_out_rule_and_decompression_bomb(checkpoint, tmp_path, capsys):
    from tests.fuzz_cases import BOMB_PNG

    path, _, _ = checkpoint
    image = tmp_path / "room.png"
    Image.new("RGB", (40, 30)).save(image)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(BOMB_PNG)
    code, err = _predict(capsys, str(path), str(bomb), "--out", str(tmp_path / "p"))
    assert code == 2 and "bomb.png" in err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "room.npz").write_bytes(b"my own file")
    code, err = _predict(capsys, str(path), str(image), "--out", str(mine))
    assert code == 2 and "not an mtlsearch predictions output" in err
    assert (mine / "room.npz").read_bytes() == b"my own file"
    code, err = _predict(capsys, str(path), str(image), "--out", str(tmp_path))
    assert code == 2 and "contains the input" in err
    out = tmp_path / "pred"
    assert _predict(capsys, str(path), str(image), "--out", str(out))[0] == 0
    assert _predict(capsys, str(path), str(image), "--out", str(out))[0] == 0  # replaces its own
    assert sorted(p.name for p in out.iterdir()) == [".mtlsearch-predictions", "room.npz", "room.png"]
