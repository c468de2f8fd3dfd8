"""The command line: every subcommand has --help; user mistakes exit 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtlsearch.cli import build_parser

COMMANDS = [
    ["data", "synthrooms"], ["data", "preview"], ["data", "check"], ["data", "import-colmap"],
    ["train"], ["search"], ["report"], ["predict"], ["best"], ["status"], ["prune"], ["reproduce"],
    ["evaluate"], ["weights", "convert"],
    ["bench", "data"], ["bench", "model"], ["bench", "search"], ["bench", "crossview"], ["bench", "gpu"],
]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtlsearch.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_top_level_help_lists_subcommands():
    out = _run("--help")
    assert out.returncode == 0
    for name in ("data", "train", "search", "report", "predict", "bench"):
        assert name in out.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: mtlsearch " + " ".join(command) in capsys.readouterr().out


def test_every_handler_resolves():
    """Each subcommand dispatches to a function that exists."""
    from mtlsearch.cli import _resolve

    parser = build_parser()
    handlers = {
        action.choices[name].get_default("_handler")
        for action in parser._subparsers._group_actions
        for name in action.choices
    }
    for group in ("data", "bench", "weights"):
        sub = parser._subparsers._group_actions[0].choices[group]
        for action in sub._subparsers._group_actions:
            handlers |= {p.get_default("_handler") for p in action.choices.values()}
    handlers.discard(None)
    assert len(handlers) == len(COMMANDS)
    for handler in handlers:
        assert callable(_resolve(handler)), handler


def test_user_error_is_one_line_exit_2(tmp_path):
    out = _run("train", str(tmp_path / "missing.yaml"))
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:")
    assert "Traceback" not in out.stderr
    assert "missing.yaml" in out.stderr


def test_bad_size_is_rejected_by_argparse(tmp_path):
    out = _run("data", "synthrooms", "--out", str(tmp_path / "d"), "--size", "0x5")
    assert out.returncode == 2
    assert "--size" in out.stderr and "Traceback" not in out.stderr
