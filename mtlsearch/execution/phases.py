"""Timestamps of a trial's phases, for ``mtlsearch bench search --profile-phases``.

When ``MTLSEARCH_PHASES`` names a file, :func:`mark` appends one JSON line per event
(``{"event", "t", "pid", "trial"}``, wall-clock seconds) to it from any process of
the search (driver, trial, Train workers); otherwise it does nothing and costs nothing.
Events, in the order a trial passes them: ``trial_start`` (the Tune trial function
runs), ``loop_start`` (the training loop runs in the trial's process, once a multi-worker
trial's peers joined its DDP group; on Train's rank 0 under ``mtlsearch train``), ``model_ready`` (data and model
built), ``first_step`` (one optimizer step done), ``loop_end``, ``trial_end``.
"""

from __future__ import annotations

import json
import os
import time

ENV = "MTLSEARCH_PHASES"


def mark(event: str, trial: str | None = None) -> None:
    """Record ``event`` now (only when ``$MTLSEARCH_PHASES`` is set)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), "trial": trial})
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def read(path: str) -> list[dict]:
    """The events recorded in ``path``, in time order."""
    try:
        with open(path, encoding="utf-8") as src:
            events = [json.loads(line) for line in src if line.strip()]
    except FileNotFoundError:
        return []
    return sorted(events, key=lambda e: e["t"])


__all__ = ["ENV", "mark", "read"]
