"""Multi-view samples: neighbour choice, relative poses, partial labels, loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlsearch.config import load_config
from mtlsearch.data.multiview import ViewGraph
from mtlsearch.data.pipeline import build_datasets, build_loader, effective_num_views, resolve_root
from mtlsearch.data.reader import Camera
from mtlsearch.errors import UserError
from tests.test_readers import make_nyud_tree, make_pascal_tree


def _cam(x: float, scene: str) -> Camera:
    c2w = np.eye(4)
    c2w[0, 3] = x
    return Camera(np.eye(3), c2w, scene, 0)


def test_view_graph_orders_by_camera_distance() -> None:
    cams = {"a": _cam(0.0, "s"), "b": _cam(3.0, "s"), "c": _cam(1.0, "s"), "d": _cam(0.5, "t"),
            "e": _cam(9.0, "u")}
    g = ViewGraph(list(cams), cams)
    assert g.neighbours("a", 2) == ["c", "b"]
    assert g.neighbours("b", 1) == ["c"]
    assert g.neighbours("a", 3) == ["c", "b", "c"]  # cycles when the scene is short
    assert g.neighbours("d", 2) == ["d", "d"]  # alone in its scene: itself
    assert ViewGraph(["a"], None).neighbours("a", 1) == ["a"]


def _cfg(root: Path, *overrides: str):
    return load_config(None, [f"data.root={root}", "data.crop_size=[32, 40]", "data.num_workers=0",
                              "train.batch_size=2", *overrides])


def test_relative_pose_and_partial_labels(tmp_path: Path) -> None:
    make_nyud_tree(tmp_path, train=("a", "b", "d"), val=("c",))
    # Rotate view b's camera so the relative pose is not a pure translation.
    cam = json.loads((tmp_path / "cameras" / "b.json").read_text())
    c2w = np.array(cam["cam2world"])
    t = np.radians(20)
    c2w[:3, :3] = [[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]]
    cam["cam2world"] = c2w.tolist()
    (tmp_path / "cameras" / "b.json").write_text(json.dumps(cam))
    cfg = _cfg(tmp_path, "data.layout=nyud", "data.num_views=2", "data.augment=false",
               "data.source_tasks=[depth]", "tasks={semseg: 1, depth: 1, normals: 10}")
    train, _, info = build_datasets(cfg)
    assert info.has_cameras and info.train_size == 3 and info.num_classes == {"semseg": 40}
    sample = train[0]  # reference "a" at x = 0; nearest other view "b" at x = 0.1
    ref, src = sample["views"]
    assert ref["name"] == "a" and src["name"] == "b"
    expected = np.linalg.inv(c2w) @ np.eye(4)
    assert np.allclose(src["rel_pose"].numpy(), expected, atol=1e-6)
    assert torch.equal(ref["rel_pose"], torch.eye(4))
    assert bool(src["has"]["depth"]) and not bool(src["has"]["semseg"]) and not bool(src["has"]["normals"])
    assert (src["labels"]["semseg"] == 255).all() and (src["labels"]["normals"] == 0).all()
    assert (src["labels"]["depth"] > 0).any()
    assert all(bool(v) for v in ref["has"].values())


def test_dataset_without_cameras_is_refused_unless_duplication_is_asked(tmp_path: Path) -> None:
    make_pascal_tree(tmp_path)
    args = ("data.layout=pascal", "tasks={semseg: 1, parts: 2, sal: 5}", "data.val_size=[32, 48]")
    for extra in (["cvm.enabled=true"], ["regularizer.enabled=true", "regularizer.cross_view.enabled=true",
                                          "regularizer.ray_mode=perspective"]):
        with pytest.raises(UserError, match=r"cameras/ is missing.*single_view_duplication"):
            resolve_root(_cfg(tmp_path, *args, *extra))
        with pytest.raises(UserError, match=r"cameras/ is missing"):
            build_datasets(_cfg(tmp_path, *args, *extra))
    cfg = _cfg(tmp_path, *args, "cvm.enabled=true", "data.single_view_duplication=true")
    assert effective_num_views(cfg) == 2
    train, val, info = build_datasets(cfg, val_num_views=2)
    assert not info.has_cameras and info.num_classes == {"semseg": 21, "parts": 7}
    for sample in (train[1], val[0]):
        ref, src = sample["views"]
        assert src["name"] == ref["name"]
        assert torch.equal(src["rel_pose"], torch.eye(4))
        assert torch.equal(src["image"], ref["image"]) and torch.equal(src["K"], ref["K"])
    assert val[0]["views"][0]["image"].shape == (3, 32, 48)
    assert len(val.with_views(1)[0]["views"]) == 1


def test_loader_batches_multiview_samples(tmp_path: Path) -> None:
    make_nyud_tree(tmp_path, train=("a", "b", "d", "e"), val=("c",))
    cfg = _cfg(tmp_path, "data.layout=nyud", "data.num_views=2", "data.num_workers=1",
               "tasks={semseg: 1, depth: 1, normals: 10, edge: 50, sal: 1}")
    train, val, _ = build_datasets(cfg)
    loader = build_loader(train, cfg, train=True, distributed=False)
    batch = next(iter(loader))
    v0, v1 = batch["views"]
    assert v0["image"].shape == (2, 3, 32, 40) and v1["K"].shape == (2, 3, 3)
    assert v0["labels"]["semseg"].dtype == torch.int64 and v0["labels"]["depth"].shape == (2, 1, 32, 40)
    assert v1["rel_pose"].shape == (2, 4, 4) and len(v0["name"]) == 2
    assert loader.drop_last and loader.persistent_workers
    vbatch = next(iter(build_loader(val, cfg, train=False, distributed=False)))
    assert len(vbatch["views"]) == 1 and vbatch["views"][0]["image"].shape[-2:] == (32, 64)


def test_synthrooms_root_is_generated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mtlsearch.data.synthrooms")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["data.synth.scenes=2", "data.synth.views=2", "data.synth.size=[24, 32]",
                             "data.synth.val_fraction=0.5", "data.synth.cache_dir=cache"])
    root = resolve_root(cfg)
    assert root.is_absolute() and root.parent == tmp_path / "cache" and (root / "meta.json").is_file()
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert resolve_root(cfg) == root and (root / "meta.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.name]
    cfg2 = load_config(cfg.to_dict(), ["data.synth.seed=1"])
    assert resolve_root(cfg2) != root
