"""Shared test settings: quiet, offline, CPU-only Ray."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """``write_yaml(text, name="file.yaml")``: write dedented text under ``tmp_path``."""

    def write(text: str, name: str = "file.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for one test module (2 CPUs, no dashboard, workers' logs not
    forwarded), shut down after the module; skips without Ray."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_session(local_ray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`local_ray` plus a SynthRooms cache folder shared by the module's searches."""
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture
def one_thread():
    """One torch thread for the test (like a 1-CPU Ray worker), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
