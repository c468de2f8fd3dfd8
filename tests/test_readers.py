"""NYUD_MT and PASCAL_MT readers on tiny fixture trees written in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from mtlsearch.data.nyud import NyudReader
from mtlsearch.data.pascal import PascalReader
from mtlsearch.errors import UserError
from mtlsearch.tasks.edge import context_edges, laplacian, thin
from mtlsearch.tasks.parts import decode_human_parts

H, W = 32, 40


# ---------------------------------------------------------------------------
# Fixture builders (also used by test_data_check.py)
# ---------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_nyud_tree(root: Path, train=("a", "b"), val=("c",), cameras: bool = True,
                   depth_png: bool = False, normals_npy: bool = False) -> dict:
    """A NYUD_MT folder; returns the raw arrays written, per id."""
    rng = np.random.default_rng(1)
    written = {}
    for k, id_ in enumerate((*train, *val)):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = rng.uniform(0.5, 8.0, (H, W)).astype(np.float32)
        depth[0, :5] = 0.0
        n = rng.normal(size=(H, W, 3))
        n /= np.linalg.norm(n, axis=2, keepdims=True)
        seg = rng.integers(0, 41, (H, W)).astype(np.uint8)
        edge = np.zeros((H, W), np.uint8)
        edge[10, :] = 255
        sal = np.zeros((H, W), np.uint8)
        sal[5:9, 5:9] = 200
        sal[20, 20] = 100
        _png(root / "images" / f"{id_}.png", img)
        if depth_png:
            _png(root / "depth" / f"{id_}.png", np.round(depth * 1000).astype(np.uint16))
        else:
            (root / "depth").mkdir(parents=True, exist_ok=True)
            np.save(root / "depth" / f"{id_}.npy", depth)
        if normals_npy:
            (root / "normals").mkdir(parents=True, exist_ok=True)
            np.save(root / "normals" / f"{id_}.npy", n.astype(np.float32))
        else:
            _png(root / "normals" / f"{id_}.png", np.round((n + 1) / 2 * 255).astype(np.uint8))
        _png(root / "segmentation" / f"{id_}.png", seg)
        _png(root / "edge" / f"{id_}.png", edge)
        _png(root / "saliency" / f"{id_}.png", sal)
        if cameras:
            c2w = np.eye(4)
            c2w[:3, 3] = [0.1 * k, 0.0, 0.0]
            cam = {"K": [[30.0, 0, 19.5], [0, 30.0, 15.5], [0, 0, 1]], "cam2world": c2w.tolist(),
                   "scene": "s0", "frame": k}
            (root / "cameras").mkdir(parents=True, exist_ok=True)
            (root / "cameras" / f"{id_}.json").write_text(json.dumps(cam))
        written[id_] = {"image": img, "depth": depth, "normals": n, "seg": seg, "edge": edge, "sal": sal}
    (root / "gt_sets").mkdir(parents=True, exist_ok=True)
    (root / "gt_sets" / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (root / "gt_sets" / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return written


def _parts_struct(objects: list[tuple[str, int, np.ndarray, list[tuple[str, np.ndarray]]]]) -> dict:
    """The PASCAL-Part ``anno`` struct: imname + objects(class, class_ind, mask, parts(part_name, mask))."""
    obj_dt = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objs = np.zeros((1, len(objects)), dtype=obj_dt)
    for j, (cls, ind, mask, parts) in enumerate(objects):
        if parts:
            parr = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for i, (name, pmask) in enumerate(parts):
                parr[0, i] = (name, pmask.astype(np.uint8))
        else:
            parr = np.zeros((0, 0))
        objs[0, j] = (cls, np.array([[ind]], dtype=np.uint8), mask.astype(np.uint8), parr)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("img", objs)
    return {"anno": anno}


def make_pascal_tree(root: Path, train=("p1", "p2"), val=("p3",)) -> dict:
    """A PASCAL_MT folder: p1 has a person with parts, p2 a person without parts (and a
    dog), p3 no person."""
    rng = np.random.default_rng(2)
    written = {}
    for id_ in (*train, *val):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        _png(root / "JPEGImages" / f"{id_}.jpg", img)
        sem = np.zeros((H, W), np.uint8)
        sem[8:20, 10:30] = 15
        sem[0, 0] = 255
        _png(root / "semseg" / "pascal-context" / f"{id_}.png", sem)
        nrm = np.zeros((H, W, 3))
        nrm[..., 2] = -1.0
        nrm[:, : W // 2, 0] = 0.6
        nrm[:, : W // 2, 2] = -0.8
        _png(root / "normals_distill" / f"{id_}.png", np.round((nrm + 1) / 2 * 255).astype(np.uint8))
        sal = np.zeros((H, W), np.uint8)
        sal[:, :10] = 255
        sal[:, 10:12] = 100  # below 0.5 -> 0
        _png(root / "sal_distill" / f"{id_}.png", sal)
        labelmap = np.full((H, W), 440, np.uint16)  # wall (valid for normals)
        labelmap[16:, :] = 360  # sky (not an NYU class -> normals invalid)
        labelmap[4:10, 4:12] = 284  # person
        (root / "pascal-context" / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "pascal-context" / "trainval" / f"{id_}.mat", {"LabelMap": labelmap})
        person = np.zeros((H, W), bool)
        person[8:20, 10:30] = True
        head = np.zeros((H, W), bool)
        head[8:11, 12:16] = True
        luarm = np.zeros((H, W), bool)
        luarm[12:14, 10:14] = True
        rfoot = np.zeros((H, W), bool)
        rfoot[18:20, 25:30] = True
        torso = np.zeros((H, W), bool)
        torso[11:18, 15:25] = True
        if id_ == "p1":
            objs = [("person", 15, person, [("head", head), ("luarm", luarm), ("rfoot", rfoot), ("torso", torso)]),
                    ("dog", 12, np.zeros((H, W), bool), [])]
        elif id_ == "p2":
            objs = [("dog", 12, person, []), ("person", 15, person, [])]
        else:
            objs = [("cat", 8, person, [])]
        (root / "human_parts").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "human_parts" / f"{id_}.mat", _parts_struct(objs))
        written[id_] = {"image": img, "sem": sem, "labelmap": labelmap}
    sets = root / "ImageSets" / "Context"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("".join(f"{i}\n" for i in train))
    (sets / "val.txt").write_text("".join(f"{i}\n" for i in val))
    return written


# ---------------------------------------------------------------------------
# NYUD_MT
# ---------------------------------------------------------------------------


def test_nyud_decodes_every_task(tmp_path: Path) -> None:
    raw = make_nyud_tree(tmp_path)
    r = NyudReader(tmp_path, "nyud")
    assert r.tasks == ("semseg", "depth", "normals", "edge", "sal")
    assert r.split_ids("train") == ["a", "b"] and r.split_ids("val") == ["c"]
    assert r.has_cameras and r.num_classes["semseg"] == 40
    a = raw["a"]
    assert (r.read_image("a") == a["image"]).all()
    seg = r.read_label("a", "semseg")
    assert seg.dtype == np.uint8
    assert (seg[a["seg"] == 0] == 255).all()
    assert (seg[a["seg"] > 0] == a["seg"][a["seg"] > 0] - 1).all()
    assert np.array_equal(r.read_label("a", "depth"), a["depth"])
    n = r.read_label("a", "normals")
    assert np.abs(n - a["normals"]).max() < 0.01  # png quantisation, renormalised
    assert np.allclose(np.linalg.norm(n, axis=2), 1.0, atol=1e-5)
    edge = r.read_label("a", "edge")
    assert edge.sum() == W and (edge[10] == 1).all()
    sal = r.read_label("a", "sal")
    assert sal.sum() == 16 and sal[20, 20] == 0  # 200/255 > 0.5 -> 1, 100/255 -> 0
    cam = r.camera("b")
    assert cam.scene == "s0" and cam.frame == 1 and cam.cam2world[0, 3] == pytest.approx(0.1)


def test_nyud_depth_png_millimetres_and_normals_npy(tmp_path: Path) -> None:
    raw = make_nyud_tree(tmp_path, cameras=False, depth_png=True, normals_npy=True)
    r = NyudReader(tmp_path, "nyud")
    d = r.read_label("a", "depth")
    assert np.allclose(d, np.round(raw["a"]["depth"] * 1000) / 1000, atol=1e-6)
    assert (d[0, :5] == 0).all()
    assert np.allclose(r.read_label("a", "normals"), raw["a"]["normals"], atol=1e-6)
    assert not r.has_cameras
    view = r.read_view("a", ["depth"])
    # Without cameras: NYUv2 Kinect intrinsics scaled to 32x40, identity pose.
    assert view["K"][0, 0] == pytest.approx(518.857901 * W / 640)
    assert np.array_equal(view["cam2world"], np.eye(4))


def test_missing_task_and_broken_files_name_the_path(tmp_path: Path) -> None:
    make_nyud_tree(tmp_path)
    r = NyudReader(tmp_path, "nyud")
    with pytest.raises(UserError, match="'parts'.*nyud"):
        r.read_view("a", ["semseg", "parts"])
    (tmp_path / "depth" / "a.npy").unlink()
    with pytest.raises(UserError, match=r"depth/a\.npy"):
        r.read_label("a", "depth")
    png = tmp_path / "segmentation" / "b.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(UserError, match=r"segmentation/b\.png"):
        r.read_label("b", "semseg")
    (tmp_path / "cameras" / "c.json").write_text("{not json")
    with pytest.raises(UserError, match=r"cameras/c\.json"):
        r.camera("c")


def test_size_mismatch_is_reported(tmp_path: Path) -> None:
    make_nyud_tree(tmp_path)
    np.save(tmp_path / "depth" / "a.npy", np.ones((10, 10), np.float32))
    r = NyudReader(tmp_path, "nyud")
    with pytest.raises(UserError, match=r"depth/a\.npy.*differs"):
        r.read_view("a", ["depth"])


# ---------------------------------------------------------------------------
# PASCAL_MT
# ---------------------------------------------------------------------------


def test_pascal_tasks_and_semseg(tmp_path: Path) -> None:
    raw = make_pascal_tree(tmp_path)
    r = PascalReader(tmp_path)
    assert set(r.tasks) == {"semseg", "parts", "normals", "sal", "edge"}
    assert r.num_classes == {"semseg": 21, "parts": 7}
    assert np.array_equal(r.read_label("p1", "semseg"), raw["p1"]["sem"])
    with pytest.raises(UserError, match="'depth'.*pascal"):
        r.read_view("p1", ["depth"])
    sal = r.read_label("p1", "sal")
    assert (sal[:, :10] == 1).all() and (sal[:, 10:] == 0).all()


def test_pascal_human_parts_decoding(tmp_path: Path) -> None:
    make_pascal_tree(tmp_path)
    p1 = decode_human_parts(tmp_path / "human_parts" / "p1.mat")
    assert p1.dtype == np.uint8 and p1.shape == (H, W)
    assert (p1[8:11, 12:16] == 1).all()  # head group
    assert (p1[12:14, 10:14] == 3).all()  # left upper arm
    assert (p1[18:20, 25:30] == 6).all()  # right foot -> lower legs/feet
    assert (p1[11:18, 15:25] == 2).all()  # torso
    assert p1[0, 0] == 0 and set(np.unique(p1)) == {0, 1, 2, 3, 6}
    # A person without parts, or no person at all: the whole image is ignored.
    assert (decode_human_parts(tmp_path / "human_parts" / "p2.mat") == 255).all()
    assert (decode_human_parts(tmp_path / "human_parts" / "p3.mat") == 255).all()
    r = PascalReader(tmp_path)
    assert r.read_view("p1", ["parts"])["has"]["parts"]
    assert not r.read_view("p3", ["parts"])["has"]["parts"]


def test_pascal_normals_masked_to_nyu_classes(tmp_path: Path) -> None:
    make_pascal_tree(tmp_path)
    n = PascalReader(tmp_path).read_label("p1", "normals")
    assert (n[16:] == 0).all()  # sky: no distilled normals
    assert np.allclose(n[:4, W // 2 :], [0, 0, -1], atol=0.01)
    assert np.allclose(n[:4, :4], [0.6, 0, -0.8], atol=0.01)
    assert np.allclose(n[4:10, 4:12, 2], -0.8, atol=0.01)  # person is an NYU class


def test_laplacian_and_thinning_by_hand() -> None:
    labels = np.zeros((5, 6), np.uint16)
    labels[:, 3:] = 2
    lap = laplacian(labels)
    # Columns 2 and 3 differ from a horizontal neighbour: +2 and -2, elsewhere 0.
    assert (lap[:, 2] == 2).all() and (lap[:, 3] == -2).all()
    assert (np.delete(lap, [2, 3], axis=1) == 0).all()
    # skimage.morphology.thin's documented example.
    square = np.zeros((7, 7), bool)
    square[1:-1, 2:-2] = True
    square[0, 1] = True
    expected = np.zeros((7, 7), bool)
    expected[0, 1] = expected[1, 2] = True
    expected[2:5, 3] = True
    assert np.array_equal(thin(square), expected)
    # Edges of a two-region map: the 2-pixel band thins to a one-pixel line (Guo-Hall
    # also trims one end pixel of a 2-wide band).
    edges = context_edges(labels)
    assert edges.dtype == np.float32
    assert (edges[:, 2:4].sum(axis=1) <= 1).all() and edges.sum() == 4
    assert edges[1:, 2].all() and edges[:, [0, 1, 4, 5]].sum() == 0


def test_pascal_edges_from_label_map(tmp_path: Path) -> None:
    raw = make_pascal_tree(tmp_path)
    e = PascalReader(tmp_path).read_label("p1", "edge")
    assert e.shape == (H, W) and set(np.unique(e)) <= {0.0, 1.0}
    assert np.array_equal(e, context_edges(raw["p1"]["labelmap"]))
    # The person box boundary and the wall/sky boundary carry edges; the interior does not.
    assert e[15:17].sum() > 0 and e[4:10, 4:12].sum() > 0 and e[25:, :].sum() == 0


# ---------------------------------------------------------------------------
# Hostile files: one UserError naming the file, never a traceback or a huge allocation
# ---------------------------------------------------------------------------


def test_hostile_arrays_images_and_split_lists(tmp_path: Path) -> None:
    from tests.fuzz_cases import BOMB_PNG, LARGE_PNG

    make_nyud_tree(tmp_path)
    reader = NyudReader(tmp_path)
    depth = tmp_path / "depth" / "a.npy"
    for array in (np.array(["a", "bb"]), np.zeros((H, W), np.complex64),
                  np.zeros(3, dtype=[("x", "f4")])):
        np.save(depth, array)
        with pytest.raises(UserError, match="a.npy: expected a numeric array"):
            reader.read_label("a", "depth")
    np.save(depth, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="a.npy"):
        reader.read_label("a", "depth")
    np.save(depth, np.zeros((H, W), np.float32))
    depth.write_bytes(depth.read_bytes()[:200])
    with pytest.raises(UserError, match="a.npy: truncated"):
        reader.read_label("a", "depth")
    image = tmp_path / "images" / "a.png"
    for content, message in ((BOMB_PNG, "image too large"), (LARGE_PNG, "decompression bomb")):
        image.write_bytes(content)
        with pytest.raises(UserError, match=message):
            reader.read_image("a")
    split = tmp_path / "gt_sets" / "train.txt"
    split.write_bytes(b"\xff\xfe\x00a\x00")
    with pytest.raises(UserError, match="train.txt: not a UTF-8 text file"):
        reader.split_ids("train")
    for bad in (b"a\n../../etc/passwd\n", b"a\nb\x00c\n", b"sub/a\n"):
        split.write_bytes(bad)
        with pytest.raises(UserError, match="train.txt, line "):
            reader.split_ids("train")
    split.write_bytes("\ufeffa\nb\n".encode())
    assert reader.split_ids("train") == ["a", "b"]
    camera = tmp_path / "cameras" / "a.json"
    camera.write_text(json.dumps({"K": np.eye(3).tolist(), "cam2world": np.eye(4).tolist(),
                                  "frame": 1e999}))
    with pytest.raises(UserError, match="a.json"):
        NyudReader(tmp_path).camera("a")
