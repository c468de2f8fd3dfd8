"""SynthRooms generator: geometry consistency, labels, determinism, atomicity, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtlsearch.cli import main
from mtlsearch.data import geometry as g
from mtlsearch.data import synthrooms as sr
from mtlsearch.data.preview import draw_preview
from mtlsearch.errors import UserError
from mtlsearch.tasks import SYNTHROOMS_CLASSES, SYNTHROOMS_OBJECT_CLASSES

SCENES, VIEWS, SIZE = 3, 3, (60, 80)
PLANAR = [
    SYNTHROOMS_CLASSES.index(c) for c in ("wall", "floor", "ceiling", "window", "picture", "door")
]
OBJECTS = [SYNTHROOMS_CLASSES.index(c) for c in SYNTHROOMS_OBJECT_CLASSES]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sr") / "serial"
    return sr.generate(
        out, scenes=SCENES, views=VIEWS, size=SIZE, seed=0, workers=1, progress=False
    )


def _ids(root: Path) -> list[str]:
    return [sr.view_id(s, f) for s in range(SCENES) for f in range(VIEWS)]


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _view(root: Path, vid: str) -> dict:
    cam = json.loads((root / "cameras" / f"{vid}.json").read_text())
    normals = _png(root / "normals" / f"{vid}.png").astype(np.float64) / 255 * 2 - 1
    return {
        "rgb": _png(root / "images" / f"{vid}.png"),
        "depth": np.load(root / "depth" / f"{vid}.npy"),
        "normals": normals / np.linalg.norm(normals, axis=-1, keepdims=True),
        "seg": _png(root / "segmentation" / f"{vid}.png"),
        "edge": _png(root / "edge" / f"{vid}.png"),
        "sal": _png(root / "saliency" / f"{vid}.png"),
        "inst": _png(root / "instances" / f"{vid}.png"),
        "K": np.array(cam["K"]),
        "cam2world": np.array(cam["cam2world"]),
        "cam": cam,
    }


def test_layout_and_splits(data: Path) -> None:
    meta = json.loads((data / "meta.json").read_text())
    assert meta["classes"] == list(SYNTHROOMS_CLASSES)
    assert meta["image_size"] == list(SIZE) and meta["params"]["scenes"] == SCENES
    lo, hi = meta["depth_range"]
    assert 0.3 < lo < hi < 12.0
    for vid in _ids(data):
        v = _view(data, vid)
        assert v["rgb"].shape == (*SIZE, 3) and v["rgb"].dtype == np.uint8
        assert v["depth"].shape == SIZE and v["depth"].dtype == np.float32
        assert v["inst"].dtype == np.uint16
        assert set(np.unique(v["edge"])) <= {0, 255} and set(np.unique(v["sal"])) <= {0, 255}
        assert v["seg"].min() >= 1 and v["seg"].max() <= len(SYNTHROOMS_CLASSES)
        assert v["cam"]["scene"] == vid[:5] and v["cam"]["frame"] == int(vid[-2:])
    train = (data / "gt_sets" / "train.txt").read_text().split()
    val = (data / "gt_sets" / "val.txt").read_text().split()
    assert sorted(train + val) == _ids(data)
    scenes_tr, scenes_va = {x[:5] for x in train}, {x[:5] for x in val}
    assert scenes_tr and scenes_va and not scenes_tr & scenes_va


def test_split_scenes() -> None:
    assert sr.split_scenes(1, 0.5, 0) == []
    assert sr.split_scenes(10, 0.0, 0) == []
    assert len(sr.split_scenes(10, 0.2, 0)) == 2
    assert len(sr.split_scenes(10, 0.01, 0)) == 1
    assert len(sr.split_scenes(10, 0.99, 0)) == 9
    assert sr.split_scenes(10, 0.2, 0) == sr.split_scenes(10, 0.2, 0)


def _sample_depth(depth: np.ndarray, inst: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Depth at sub-pixel points ``uv`` (N, 2) inside the image: inverse depth (affine in
    u, v on a plane) interpolated bilinearly where the 2x2 cell is one instance, else the
    nearest pixel."""
    h, w = depth.shape
    x0 = np.clip(np.floor(uv[:, 0]).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(uv[:, 1]).astype(int), 0, h - 2)
    fx, fy = uv[:, 0] - x0, uv[:, 1] - y0
    inv = 1.0 / depth.astype(np.float64)
    bil = (inv[y0, x0] * (1 - fx) + inv[y0, x0 + 1] * fx) * (1 - fy) + (
        inv[y0 + 1, x0] * (1 - fx) + inv[y0 + 1, x0 + 1] * fx
    ) * fy
    cell = inst[y0, x0]
    same = (inst[y0, x0 + 1] == cell) & (inst[y0 + 1, x0] == cell) & (inst[y0 + 1, x0 + 1] == cell)
    near = depth[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)]
    return np.where(same, 1.0 / bil, near)


def test_depth_reprojects_across_views(data: Path) -> None:
    """Back-project view i, project into view j: z-buffer agreement on co-visible pixels.

    Points landing in j's image with projected z <= 1.01 * depth_j are co-visible (larger
    z: occluded in j); at least 95% of them must agree with depth_j within 1%.
    """
    fractions = []
    for s in range(SCENES):
        views = [_view(data, sr.view_id(s, f)) for f in range(VIEWS)]
        for i in range(VIEWS):
            for j in range(VIEWS):
                if i == j:
                    continue
                a, b = views[i], views[j]
                pts = g.backproject(a["depth"], a["K"]).reshape(-1, 3)
                pts = g.transform_points(g.rel_pose(a["cam2world"], b["cam2world"]), pts)
                uv, z = g.project(pts, b["K"])
                inside = (
                    np.isfinite(uv).all(-1)
                    & (uv[:, 0] > -0.5)
                    & (uv[:, 0] < SIZE[1] - 0.5)
                    & (uv[:, 1] > -0.5)
                    & (uv[:, 1] < SIZE[0] - 0.5)
                )
                d_j = _sample_depth(b["depth"], b["inst"], uv[inside])
                z_in = z[inside]
                covis = z_in <= d_j * 1.01  # points further away are occluded in view j
                agree = np.abs(z_in[covis] - d_j[covis]) <= 0.01 * d_j[covis]
                assert covis.sum() > 0.4 * z.size, (s, i, j)
                assert agree.mean() >= 0.95, (s, i, j, agree.mean())
                fractions.append(agree.mean())
    assert np.mean(fractions) > 0.97


def test_normals_match_depth_on_planar_surfaces(data: Path) -> None:
    errs = []
    for vid in _ids(data):
        v = _view(data, vid)
        rays = g.camera_rays(v["K"], *SIZE)
        assert (np.sum(v["normals"] * rays, -1) < 0.02).all()  # facing (up to png rounding)
        est = g.normals_from_depth(v["depth"], v["K"])
        mask = np.isin(v["seg"] - 1, PLANAR) & (v["edge"] == 0)
        # Away from boundaries: no edge pixel within 2 pixels.
        far = mask.copy()
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                far &= np.roll(np.roll(v["edge"] == 0, dy, 0), dx, 1)
        far[:2], far[-2:], far[:, :2], far[:, -2:] = False, False, False, False
        cos = np.clip(np.sum(est * v["normals"], -1), -1, 1)
        errs.append(np.degrees(np.arccos(cos[far])))
    errs = np.concatenate(errs)
    assert errs.size > 10000
    assert np.median(errs) < 3.0
    assert np.percentile(errs, 90) < 5.0


def test_in_memory_views_match_files(data: Path) -> None:
    views = sr.render_scene_views(0, 1, VIEWS, SIZE)
    rays = g.camera_rays(views[0]["K"], *SIZE)
    for f, mem in enumerate(views):
        v = _view(data, sr.view_id(1, f))
        assert (np.sum(mem["normals"] * rays, -1) < 0).all()  # facing the camera
        assert np.array_equal(mem["rgb"], v["rgb"])
        assert np.array_equal(mem["depth"], v["depth"])
        assert np.array_equal(mem["semseg"] + 1, v["seg"])
        assert np.allclose(np.linalg.norm(mem["normals"], axis=-1), 1.0, atol=1e-5)
        assert (
            np.degrees(np.arccos(np.clip(np.sum(mem["normals"] * v["normals"], -1), -1, 1))).max()
            < 1.0
        )


def test_boundaries_and_saliency_are_exact(data: Path) -> None:
    lab = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    assert sr.boundaries(lab).tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    assert sr.boundaries(np.ones((3, 4), int)).sum() == 0
    for vid in _ids(data):
        v = _view(data, vid)
        key = v["seg"].astype(np.int64) * 65536 + v["inst"]
        change = np.zeros(SIZE, dtype=bool)
        dv, dh = key[1:] != key[:-1], key[:, 1:] != key[:, :-1]
        change[1:] |= dv
        change[:-1] |= dv
        change[:, 1:] |= dh
        change[:, :-1] |= dh
        assert np.array_equal(v["edge"] == 255, change)
        assert np.array_equal(v["sal"] == 255, np.isin(v["seg"] - 1, OBJECTS))
        # Class is a function of the instance.
        for i in np.unique(v["inst"]):
            assert len(np.unique(v["seg"][v["inst"] == i])) == 1


def test_camera_path_and_class_coverage(data: Path) -> None:
    seen = set()
    for s in range(SCENES):
        poses = [_view(data, sr.view_id(s, f))["cam2world"] for f in range(VIEWS)]
        for a, b in zip(poses, poses[1:]):
            step = np.linalg.norm(b[:3, 3] - a[:3, 3])
            assert 0.05 <= step <= 0.30
            assert 2.0 <= g.rotation_angle_deg(a[:3, :3].T @ b[:3, :3]) <= 10.0
        for T in poses:
            assert 1.15 <= T[2, 3] <= 1.75  # camera height (world z up)
            assert abs(T[2, 2]) < np.sin(np.radians(25))  # optical axis nearly horizontal
            assert np.allclose(T[:3, :3].T @ T[:3, :3], np.eye(3))
        for f in range(VIEWS):
            seen |= set(np.unique(_png(data / "segmentation" / f"{sr.view_id(s, f)}.png")) - 1)
    assert len(seen) >= 10, sorted(seen)


def test_class_colours_overlap(data: Path) -> None:
    """Colour alone does not tell the class: class means are close relative to their
    spreads (typical pair under 1.5 pooled std; in a 3-scene sample a class seen once may
    stand apart), and a nearest-class-mean colour classifier is poor (chance ~0.1)."""
    pix: dict[int, list[np.ndarray]] = {}
    for vid in _ids(data):
        v = _view(data, vid)
        rgb = v["rgb"].reshape(-1, 3).astype(np.float64)
        seg = v["seg"].reshape(-1) - 1
        for c in np.unique(seg):
            pix.setdefault(int(c), []).append(rgb[seg == c])
    cls = [c for c in pix if sum(len(p) for p in pix[c]) >= 200]
    assert len(cls) >= 8
    stats = {c: (np.concatenate(pix[c]).mean(0), np.concatenate(pix[c]).std(0)) for c in cls}
    sep = [
        np.linalg.norm(stats[a][0] - stats[b][0])
        / np.sqrt((np.sum(stats[a][1] ** 2) + np.sum(stats[b][1] ** 2)) / 2)
        for i, a in enumerate(cls)
        for b in cls[i + 1 :]
    ]
    assert np.median(sep) < 1.5, sep
    means = np.array([stats[c][0] for c in cls])
    recall = []
    for k, c in enumerate(cls):
        x = np.concatenate(pix[c])
        pred = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), 1)
        recall.append(np.mean(pred == k))
    assert np.mean(recall) < 0.5


def test_deterministic_serial_vs_parallel_and_seeds(data: Path, tmp_path: Path) -> None:
    par = sr.generate(
        tmp_path / "par", scenes=SCENES, views=VIEWS, size=SIZE, seed=0, workers=2, progress=False
    )
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(par) for p in par.rglob("*") if p.is_file())
    assert len(files) == SCENES * VIEWS * len(sr.MODALITIES) + 4  # splits, meta, marker
    for rel in files:
        assert (data / rel).read_bytes() == (par / rel).read_bytes(), rel
    other = sr.generate(
        tmp_path / "seed1", scenes=1, views=1, size=SIZE, seed=1, workers=1, progress=False
    )
    for sub in ("images/s0000_f00.png", "depth/s0000_f00.npy", "cameras/s0000_f00.json"):
        assert (other / sub).read_bytes() != (data / sub).read_bytes()


def test_existing_output_and_interrupted_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = {"scenes": 1, "views": 1, "size": (16, 16), "workers": 1, "progress": False}
    out = sr.generate(tmp_path / "d", **small)
    (out / "keep.txt").write_text("old")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(UserError, match="--out"):
        sr.generate(out, **small)
    with pytest.raises(UserError, match="keep.txt"):  # --force never deletes a file it did not write
        sr.generate(out, **small, force=True)
    assert (out / "keep.txt").read_text() == "old"
    (out / "keep.txt").unlink()
    before = sorted(p.name for p in out.iterdir())

    real = sr.writer._write_scene
    calls = []

    def failing(job: tuple) -> tuple:
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(sr.writer, "_write_scene", failing)
    with pytest.raises(KeyboardInterrupt):
        sr.generate(out, **{**small, "scenes": 3}, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == before  # old dataset untouched
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        sr.generate(tmp_path / "new", **{**small, "scenes": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    monkeypatch.setattr(sr.writer, "_write_scene", real)

    sr.generate(out, **small, force=True)
    assert not (out / "keep.txt").exists() and (out / "meta.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="refusing"):
        sr.generate(other, **small, force=True)
    assert (other / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--views", "0"], "--views"),
        (["--scenes", "0"], "--scenes"),
        (["--val-fraction", "1.5"], "--val-fraction"),
        (["--workers", "0"], "--workers"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_arguments(
    argv: list[str], word: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "synthrooms", "--out", str(tmp_path / "d"), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and word in err and "\n" not in err
    assert not (tmp_path / "d").exists()


def test_cli_output_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    for extra in ([], ["--force"]):
        with pytest.raises(SystemExit) as exc:
            main(["data", "synthrooms", "--out", str(target), *extra])
        assert exc.value.code == 2
        assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "x"


def test_cli_generates_and_previews(
    tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "data",
                "synthrooms",
                "--out",
                str(tmp_path / "d"),
                "--scenes",
                "2",
                "--views",
                "2",
                "--size",
                "24x32",
                "--workers",
                "1",
            ]
        )
    assert exc.value.code == 0
    assert len((tmp_path / "d" / "gt_sets" / "train.txt").read_text().split()) == 2
    png = draw_preview(data, tmp_path / "p.png", num=3, split="train")
    img = Image.open(png)
    assert img.size[0] > img.size[1] > 100
    with pytest.raises(SystemExit) as exc:
        main(["data", "preview", str(tmp_path / "missing"), "--out", str(tmp_path / "q.png")])
    assert exc.value.code == 2 and "missing" in capsys.readouterr().err
    with pytest.raises(UserError, match="nope.txt"):
        draw_preview(data, tmp_path / "q.png", split="nope")


def test_extra_views_zero_is_the_plain_dataset(data: Path, tmp_path: Path) -> None:
    """The extra-frames option, off, leaves every file byte-identical."""
    same = sr.generate(tmp_path / "zero", scenes=SCENES, views=VIEWS, size=SIZE, seed=0, workers=1,
                       progress=False, extra_views=0)
    files = sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(same) for p in same.rglob("*") if p.is_file())
    for rel in files:
        assert (data / rel).read_bytes() == (same / rel).read_bytes(), rel
    assert not (same / "gt_sets" / "extra.txt").exists()
