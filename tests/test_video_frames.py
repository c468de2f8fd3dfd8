"""Video frames with partial labels: SynthRooms extra frames, multi-view samples drawn
from them, every view supervising the heads, and the refusals around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtlsearch.config import load_config
from mtlsearch.data import synthrooms as sr
from mtlsearch.data.multiview import as_reference, every_view_as_reference
from mtlsearch.data.pipeline import build_datasets, build_loader, resolve_root, supervise_all_views
from mtlsearch.errors import UserError
from mtlsearch.models import build_model, compute_losses
from mtlsearch.models.losses import source_view_losses
from mtlsearch.train import train_inputs

TASKS = "tasks={semseg: 1, depth: 1, normals: 10}"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("video") / "sr"
    return sr.generate(out, scenes=3, views=2, size=(24, 32), seed=0, val_fraction=0.34,
                       workers=1, progress=False, extra_views=2)


def _cfg(root: Path, *overrides: str):
    return load_config(None, [f"data.root={root}", "data.crop_size=[24, 32]", "data.num_workers=0",
                              "data.augment=false", "train.batch_size=2", "model.decoder_width=8",
                              TASKS, *overrides])


def test_synthrooms_writes_depth_only_extra_frames(video: Path) -> None:
    assert sr.labelled_frames(2, 2) == [0, 3]
    extra = (video / "gt_sets" / "extra.txt").read_text().split()
    train = (video / "gt_sets" / "train.txt").read_text().split()
    assert extra == [sr.view_id(s, f) for s in range(3) for f in (1, 2)]
    assert {i[-3:] for i in train} == {"f00", "f03"}
    for vid in extra:
        assert (video / "images" / f"{vid}.png").is_file() and (video / "depth" / f"{vid}.npy").is_file()
        assert (video / "cameras" / f"{vid}.json").is_file()
        assert not (video / "normals" / f"{vid}.png").exists()
        assert not (video / "segmentation" / f"{vid}.png").exists()
    # the in-memory path renders the same frames in walk order
    views = sr.render_scene_views(0, 0, 2, (24, 32), extra=2)
    assert np.array_equal(views[1]["depth"], np.load(video / "depth" / "s0000_f01.npy"))


def test_samples_draw_sources_from_extra_frames(video: Path) -> None:
    cfg = _cfg(video, "data.extra_frames=true", "data.num_views=3")
    assert supervise_all_views(cfg)
    train, val, info = build_datasets(cfg)
    val_scenes = {i[:5] for i in val.ids}
    assert info.extra_frames == len(train.extra_ids) > 0
    assert all(i[:5] not in val_scenes for i in train.extra_ids)  # no validation frame leaks in
    assert set(train.ids).isdisjoint(train.extra_ids)  # references are labelled frames only
    ref, *sources = train[0]["views"]
    names = [s["name"] for s in sources]
    assert ref["name"] in train.ids and set(names) <= set(train.extra_ids)  # nearest: video frames
    for src in sources:
        assert bool(src["has"]["depth"]) and (src["labels"]["depth"] > 0).all()
        assert not bool(src["has"]["semseg"]) and (src["labels"]["semseg"] == 255).all()
        assert not bool(src["has"]["normals"]) and (src["labels"]["normals"] == 0).all()
        assert not torch.allclose(src["rel_pose"], torch.eye(4), atol=1e-3)


def test_every_view_as_reference_recomputes_poses(video: Path) -> None:
    cfg = _cfg(video, "data.extra_frames=true", "data.num_views=3")
    train, _, _ = build_datasets(cfg)
    views = next(iter(build_loader(train, cfg, train=True, distributed=False)))["views"]
    stacked = every_view_as_reference(views)
    b = views[0]["image"].shape[0]
    assert stacked[0]["image"].shape[0] == 3 * b and len(stacked[0]["name"]) == 3 * b
    assert torch.equal(stacked[0]["image"][:b], views[0]["image"])
    turn = as_reference(views, 2)
    assert torch.equal(stacked[0]["image"][2 * b:], views[2]["image"])
    for j, view in enumerate(turn[1:]):
        want = torch.linalg.inv(view["cam2world"].double()) @ views[2]["cam2world"].double()
        assert torch.allclose(view["rel_pose"].double(), want, atol=1e-5)
        assert torch.allclose(stacked[j + 1]["rel_pose"][2 * b:], view["rel_pose"])
    # turn 0 keeps the loader's poses
    assert torch.allclose(stacked[1]["rel_pose"][:b], views[1]["rel_pose"], atol=1e-5)


def _losses(cfg, views, model):
    inputs, labels, xview, rows = train_inputs(views, cfg)
    out = model(**inputs)
    total, parts = compute_losses(out, labels, cfg, 1.0, xview)
    if rows < len(inputs["image"]):
        parts.update(source_view_losses(out, labels, rows, cfg))
    return total, parts


def test_extra_frames_train_the_depth_head_only(video: Path) -> None:
    torch.manual_seed(0)
    cfg = _cfg(video, "data.extra_frames=true", "data.num_views=2")
    train, _, _ = build_datasets(cfg)
    views = next(iter(build_loader(train, cfg, train=True, distributed=False)))["views"]
    model = build_model(cfg).train()
    total, parts = _losses(cfg, views, model)
    assert parts["loss_src_depth"] > 0  # the heads see the video frames' depth
    assert parts["loss_src_semseg"] == 0 and parts["loss_src_normals"] == 0  # no such labels
    # Changing a video frame's depth label changes the objective only when all views supervise.
    moved = [dict(v, labels=dict(v["labels"])) for v in views]
    moved[1]["labels"]["depth"] = views[1]["labels"]["depth"] * 2
    changed, _ = _losses(cfg, moved, model)
    assert not torch.isclose(total, changed)
    off = load_config(cfg.to_dict(), {"data.supervise_all_views": False})
    base, parts_off = _losses(off, views, model)
    same, _ = _losses(off, moved, model)
    assert torch.isclose(base, same) and "loss_src_depth" not in parts_off
    # The video frames' depth gradient reaches the depth head.
    model.zero_grad()
    _, labels, _, rows = train_inputs(views, cfg)
    only_src = {"depth": labels["depth"].clone()}
    only_src["depth"][:rows] = 0  # ignore the labelled frames
    out = model(**train_inputs(views, cfg)[0])
    loss, _ = compute_losses({"heads": {"depth": out["heads"]["depth"]}}, only_src, cfg, 0.0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_extra_frames_need_a_list_cameras_and_views(video: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="num_views >= 2"):
        build_datasets(_cfg(video, "data.extra_frames=true"))
    plain = sr.generate(tmp_path / "plain", scenes=2, views=2, size=(24, 32), seed=0,
                        val_fraction=0.5, workers=1, progress=False)
    with pytest.raises(UserError, match=r"extra\.txt is missing"):
        resolve_root(_cfg(plain, "data.extra_frames=true", "data.num_views=2"))
    (plain / "gt_sets" / "extra.txt").write_text("s0000_f01\n")
    for path in (plain / "cameras").iterdir():
        path.unlink()
    (plain / "cameras").rmdir()
    with pytest.raises(UserError, match=r"cameras/ is missing.*data\.extra_frames"):
        resolve_root(_cfg(plain, "data.extra_frames=true", "data.num_views=2",
                          "data.single_view_duplication=true"))
