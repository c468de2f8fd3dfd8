"""COLMAP text and binary models -> cameras/<id>.json with known poses and intrinsics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtlsearch.cli import main
from mtlsearch.data.colmap import cameras_from_model, qvec_to_rotmat
from mtlsearch.errors import UserError


def _quat_from_rot(R: np.ndarray) -> np.ndarray:
    w = np.sqrt(1.0 + np.trace(R)) / 2.0
    return np.array([w, (R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w),
                     (R[1, 0] - R[0, 1]) / (4 * w)])


def _rot_y(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def _write_model(d: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    (d / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        "1 PINHOLE 640 480 500.0 510.0 320.0 240.0\n"
        "2 SIMPLE_RADIAL 320 240 250.0 160.5 120.5 0.01\n"
        "3 OPENCV 100 80 90.0 91.0 50.0 40.0 0.1 -0.02 0.001 0.002\n"
    )
    poses = {}
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    specs = [(1, 30.0, [0.5, -0.2, 1.0], 1, "roomA/img_002.jpg"),
             (2, -45.0, [0.0, 0.1, -2.0], 2, "roomA/img_001.jpg"),
             (3, 10.0, [1.0, 2.0, 3.0], 3, "frame9.png")]
    for image_id, deg, t, cam, name in specs:
        R = _rot_y(deg)  # world-to-camera rotation
        q = _quat_from_rot(R)
        lines.append(f"{image_id} {q[0]} {q[1]} {q[2]} {q[3]} {t[0]} {t[1]} {t[2]} {cam} {name}")
        lines.append("" if image_id == 2 else "10.5 20.5 -1 30.0 40.0 7")  # empty POINTS2D line
        poses[Path(name).stem] = (R, np.array(t))
    (d / "images.txt").write_text("\n".join(lines) + "\n")
    return poses


def test_quaternion_round_trip() -> None:
    R = _rot_y(37.0) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    assert np.allclose(qvec_to_rotmat(_quat_from_rot(R)), R)
    # 90 degrees about z: (w, x, y, z) = (cos 45, 0, 0, sin 45).
    Rz = qvec_to_rotmat(np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]))
    assert np.allclose(Rz, [[0, -1, 0], [1, 0, 0], [0, 0, 1]])


def test_import_writes_cameras(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    poses = _write_model(tmp_path / "sparse")
    out = tmp_path / "ds" / "cameras"
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "import-colmap", str(tmp_path / "sparse"), "--out", str(out), "--scale", "2.0"])
    assert exit_info.value.code == 0
    assert "wrote 3 camera files" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        ".mtlsearch-cameras", "frame9.json", "img_001.json", "img_002.json"]
    cams = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    # Intrinsics: COLMAP pixel centres at +0.5 -> cx - 0.5.
    assert np.allclose(cams["img_002"]["K"], [[500, 0, 319.5], [0, 510, 239.5], [0, 0, 1]])
    assert np.allclose(cams["img_001"]["K"], [[250, 0, 160.0], [0, 250, 120.0], [0, 0, 1]])
    assert np.allclose(cams["frame9"]["K"], [[90, 0, 49.5], [0, 91, 39.5], [0, 0, 1]])
    for id_, (R, t) in poses.items():
        c2w = np.array(cams[id_]["cam2world"])
        assert np.allclose(c2w[:3, :3], R.T)
        assert np.allclose(c2w[:3, 3], -R.T @ (2.0 * t))  # translation scaled by S = 2
        # The camera centre maps back to the camera origin under world-to-camera.
        assert np.allclose(R @ c2w[:3, 3] + 2.0 * t, 0.0)
    assert cams["img_001"]["scene"] == "roomA" and cams["img_001"]["frame"] == 0
    assert cams["img_002"]["frame"] == 1
    assert cams["frame9"]["scene"] == "colmap" and cams["frame9"]["frame"] == 0
    # Written files are readable by the dataset reader's camera parser.
    from mtlsearch.data.reader import read_camera

    assert read_camera(out / "img_002.json").K[0, 2] == pytest.approx(319.5)


def test_bad_models_name_the_file(tmp_path: Path) -> None:
    d = tmp_path / "m"
    _write_model(d)
    (d / "cameras.txt").write_text("1 FANCY 10 10 1 2 3\n")
    with pytest.raises(UserError, match=r"cameras\.txt:1: unsupported camera model 'FANCY'"):
        cameras_from_model(d)
    (d / "cameras.txt").write_text("1 PINHOLE 10 10 1 2 3\n")
    with pytest.raises(UserError, match="PINHOLE needs 4 parameters"):
        cameras_from_model(d)
    (d / "images.txt").unlink()
    (d / "cameras.txt").write_text("1 PINHOLE 10 10 1 2 3 4\n")
    with pytest.raises(UserError, match=r"missing COLMAP file: .*images\.txt"):
        cameras_from_model(d)


def test_quaternion_order_is_colmaps_w_first() -> None:
    """Random rotations: (w, x, y, z) as COLMAP writes them, sign-invariant, normalised."""
    from scipy.spatial.transform import Rotation

    rots = Rotation.random(20, random_state=0)
    for R, q_xyzw in zip(rots.as_matrix(), rots.as_quat()):
        q = np.roll(q_xyzw, 1)  # -> (w, x, y, z)
        assert np.allclose(qvec_to_rotmat(q), R)
        assert np.allclose(qvec_to_rotmat(-3.0 * q), R)
    # 120 degrees about (1, 1, 1) permutes the axes: x -> y -> z -> x.
    c, s = np.cos(np.pi / 3), np.sin(np.pi / 3) / np.sqrt(3)
    assert np.allclose(qvec_to_rotmat(np.array([c, s, s, s])), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="zero quaternion"):
        qvec_to_rotmat(np.zeros(4))


def _write_binary_model(text_dir: Path, bin_dir: Path) -> None:
    pycolmap = pytest.importorskip("pycolmap")
    (text_dir / "points3D.txt").write_text("")
    rec = pycolmap.Reconstruction()
    rec.read_text(str(text_dir))
    bin_dir.mkdir(parents=True)
    rec.write_binary(str(bin_dir))


def test_binary_model_reads_like_the_text_model(tmp_path: Path) -> None:
    """COLMAP's default output (sparse/0/*.bin, read through pycolmap) gives the same
    cameras as the text model it was converted from."""
    _write_model(tmp_path / "txt")
    _write_binary_model(tmp_path / "txt", tmp_path / "bin")
    assert not list((tmp_path / "bin").glob("*.txt"))
    from_text = cameras_from_model(tmp_path / "txt", scale=2.0)
    from_bin = cameras_from_model(tmp_path / "bin", scale=2.0)
    assert from_bin.keys() == from_text.keys()
    for id_, cam in from_text.items():
        assert from_bin[id_]["scene"] == cam["scene"] and from_bin[id_]["frame"] == cam["frame"]
        assert np.allclose(from_bin[id_]["K"], cam["K"])
        assert np.allclose(from_bin[id_]["cam2world"], cam["cam2world"])
    (tmp_path / "bin" / "cameras.bin").write_bytes(b"\xff" * 8)
    with pytest.raises(UserError, match=r"bin: cannot read the binary COLMAP model"):
        cameras_from_model(tmp_path / "bin")
    (tmp_path / "bin" / "points3D.bin").unlink()
    with pytest.raises(UserError, match=r"missing COLMAP file: .*points3D\.bin"):
        cameras_from_model(tmp_path / "bin")


def test_binary_model_without_pycolmap_names_the_extra(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (d / name).write_bytes(b"\0" * 8)
    import sys

    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(UserError, match=r"needs pycolmap \(pip install 'mtlsearch\[colmap\]'\)"):
        cameras_from_model(d)
