"""A user's mistake is one ``error:`` line; a bug is one line naming the exception and the
log file with its full traceback, and ``--debug`` / ``MTLSEARCH_DEBUG=1`` let it raise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlsearch import cli, status
from mtlsearch.errors import DEBUG_ENV, UserError, set_error_folder
from mtlsearch.layout import ERROR_LOG


def _a_bug(args) -> int:
    raise TypeError("cannot pickle '_thread.lock' object")


def _main(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    return exit_info.value.code


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    set_error_folder(None)
    yield
    set_error_folder(None)


def test_a_user_error_stays_one_line(monkeypatch, capsys) -> None:
    def mistake(args) -> int:
        raise UserError("search.seed: expected an integer, got 'abc'")

    monkeypatch.setattr(status, "run_cli", mistake)
    assert _main("status", "trials/x") == 2
    err = capsys.readouterr().err
    assert err == "error: search.seed: expected an integer, got 'abc'\n"
    assert not Path(".cache").exists()


def test_an_internal_error_names_the_exception_and_its_traceback_file(monkeypatch, capsys) -> None:
    monkeypatch.setattr(status, "run_cli", _a_bug)
    assert _main("status", "trials/x") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: internal error: TypeError: cannot pickle")
    log = Path(re.search(r"full traceback in (\S+);", err).group(1))
    assert log.is_file() and log.parent == (Path.cwd() / ".cache/mtlsearch/errors")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in _a_bug" in text
    assert "mtlsearch status trials/x" in text


def test_the_traceback_goes_to_the_search_folder_when_there_is_one(tmp_path, monkeypatch, capsys) -> None:
    folder = tmp_path / "trials" / "demo"
    folder.mkdir(parents=True)
    (folder / ERROR_LOG).write_text("an earlier error\n")

    def bug_in_a_search(args) -> int:
        set_error_folder(folder)
        raise KeyError("tasks")

    monkeypatch.setattr(status, "run_cli", bug_in_a_search)
    assert _main("status", "trials/demo") == 1
    assert f"full traceback in {folder / ERROR_LOG}" in capsys.readouterr().err
    text = (folder / ERROR_LOG).read_text()
    assert text.startswith("an earlier error\n")  # appended, nothing lost
    assert "KeyError: 'tasks'" in text


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_raises_the_internal_error(how, monkeypatch) -> None:
    monkeypatch.setattr(status, "run_cli", _a_bug)
    argv = ["status", "trials/x"]
    if how == "flag":
        argv.insert(0, "--debug")
    else:
        monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(TypeError, match="cannot pickle"):
        cli.main(argv)
