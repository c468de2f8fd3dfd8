"""``mtlsearch data check``: summary of clean folders, every problem of broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtlsearch.cli import main
from mtlsearch.data.check import check_dataset
from tests.test_readers import make_nyud_tree, make_pascal_tree


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "check", *argv])
    return int(exit_info.value.code or 0), capsys.readouterr().out


def test_clean_nyud_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_nyud_tree(tmp_path)
    code, out = _run(capsys, str(tmp_path))
    assert code == 0, out
    assert "images: train 2, val 1" in out
    assert "tasks: semseg, depth, normals, edge, sal" in out
    assert "cameras: 3 files, 1 scenes" in out
    assert "depth (m): 0.5" in out and "no problems found" in out
    assert "semseg: " in out and "ids 0..39" in out


def test_clean_pascal_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_pascal_tree(tmp_path)
    code, out = _run(capsys, str(tmp_path), "--layout", "pascal")
    assert code == 0, out
    assert "images: train 2, val 1" in out and "cameras: none" in out
    assert "parts: 5 classes seen, ids 0..6" in out


def test_every_problem_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_nyud_tree(tmp_path, train=("a", "b", "d"), val=("c",))
    (tmp_path / "depth" / "a.npy").unlink()  # missing
    png = tmp_path / "normals" / "b.png"
    png.write_bytes(png.read_bytes()[:80])  # truncated
    Image.fromarray(np.full((32, 40), 45, np.uint8)).save(tmp_path / "segmentation" / "c.png")  # class 44
    np.save(tmp_path / "depth" / "d.npy", np.ones((16, 20), np.float32))  # wrong size
    cam = json.loads((tmp_path / "cameras" / "d.json").read_text())
    cam["cam2world"][0][0] = 3.0  # not a rotation
    (tmp_path / "cameras" / "d.json").write_text(json.dumps(cam))
    (tmp_path / "edge" / "c.png").unlink()
    code, out = _run(capsys, str(tmp_path), "--layout", "nyud")
    assert code == 1
    assert "6 problem(s)" in out
    for needle in ("depth/a.npy", "normals/b.png", "segmentation/c.png: class values [44]",
                   "depth/d.npy: size 16x20 differs", "cameras/d.json: cam2world rotation",
                   "edge/c.png"):
        assert needle in out, needle


def test_report_object(tmp_path: Path) -> None:
    make_pascal_tree(tmp_path)
    (tmp_path / "human_parts" / "p2.mat").write_bytes(b"MATLAB junk")
    report = check_dataset(tmp_path, "pascal", progress=False)
    assert not report.ok and len(report.problems) == 1
    assert "human_parts/p2.mat" in report.problems[0]
    assert report.splits == {"train": 2, "val": 1}


def test_hostile_files_are_listed_as_problems(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.fuzz_cases import BOMB_PNG

    make_nyud_tree(tmp_path)
    np.save(tmp_path / "depth" / "a.npy", np.array(["x", "y"]))
    (tmp_path / "segmentation" / "b.png").write_bytes(BOMB_PNG)
    (tmp_path / "cameras" / "c.json").write_bytes(b"\xff\xfe")
    code, out = _run(capsys, str(tmp_path))
    assert code == 1
    assert "depth/a.npy: expected a numeric array" in out
    assert "segmentation/b.png: image too large" in out
    assert "c.json" in out
    (tmp_path / "gt_sets" / "val.txt").write_bytes(b"\xff\x00")
    code, out = _run(capsys, str(tmp_path))
    assert code == 1 and "val.txt: not a UTF-8 text file" in out


def test_preflight_before_training(tmp_path: Path) -> None:
    from mtlsearch.config import load_config
    from mtlsearch.data.check import preflight
    from mtlsearch.errors import UserError

    make_nyud_tree(tmp_path)
    data = {"data.layout": "nyud", "data.root": str(tmp_path)}
    cfg = load_config(None, {**data, "tasks": {"semseg": 1.0, "depth": 1.0}})
    preflight(cfg, tmp_path)
    with pytest.raises(UserError, match="'sal' is not provided|task 'sal'"):
        (tmp_path / "saliency").rename(tmp_path / "no-saliency")
        preflight(load_config(None, {**data, "tasks": {"sal": 1.0}}), tmp_path)
    (tmp_path / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="a.png"):
        preflight(cfg, tmp_path)
