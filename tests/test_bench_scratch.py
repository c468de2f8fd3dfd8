"""Benchmarks remove their scratch folders (0.5 GB after ``bench search --trials 4``) at
the end and on Ctrl-C, unless ``--keep``; the printed path says which."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mtlsearch.bench import search as bench_search
from mtlsearch.bench.scratch import scratch_folder
from mtlsearch.cli import build_parser


@pytest.mark.parametrize("keep", [False, True])
def test_scratch_folder_removed_unless_kept(keep: bool, capsys: pytest.CaptureFixture) -> None:
    with scratch_folder("mtlsearch-bench-test-", keep) as work:
        (work / "trial" / "checkpoint_000000").mkdir(parents=True)
        (work / "trial" / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"x" * 1000)
    assert work.exists() is keep
    out = capsys.readouterr().out
    assert f"(scratch folder {'kept' if keep else 'removed'}: {work}" in out
    if keep:
        import shutil

        shutil.rmtree(work)


def test_ctrl_c_in_bench_search_removes_its_scratch_folder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    seen: list[Path] = []

    def interrupted(args: argparse.Namespace, work: Path) -> int:
        (work / "cache").mkdir()
        seen.append(work)
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_search, "_run", interrupted)
    args = build_parser().parse_args(["bench", "search", "--trials", "2"])
    assert args.keep is False
    with pytest.raises(KeyboardInterrupt):
        bench_search.run_cli(args)
    assert seen and not seen[0].exists()
    assert f"(scratch folder removed: {seen[0]}" in capsys.readouterr().out
