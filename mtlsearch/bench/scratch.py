"""Scratch folders of the benchmarks: created fresh, removed at the end (also on Ctrl-C or
an error) unless ``--keep``, and the printed path says which."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_folder(prefix: str, keep: bool) -> Iterator[Path]:
    """A new temporary folder (``mtlsearch-bench-...``) for one benchmark run; only what
    this run created is removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"(scratch folder kept: {work})", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
            print(f"(scratch folder removed: {work}; --keep keeps it)", flush=True)
