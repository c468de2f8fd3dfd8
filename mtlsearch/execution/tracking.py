"""Experiment trackers of a search: TensorBoard, MLflow and Weights & Biases through Tune's callbacks.

Contract: a space's ``tracking:`` (or ``mtlsearch search --tracking a,b``) is a list of
tracker names or a mapping of tracker name to options; :func:`tracking_problem` says
what is wrong with one (the space schema calls it), :func:`normalize_tracking` turns it
into ``{name: options}``, :func:`check_available` refuses a tracker whose optional
package is missing (one ``UserError`` naming the extra, before Ray starts) and
:func:`make_callbacks` builds Tune's own logger callbacks for ``RunConfig(callbacks=)``.

* ``tensorboard``: always on. Each trial's loop writes its own events under
  ``trials/<name>/<trial id>/tensorboard/`` and Tune adds its TBX logger; naming it
  changes nothing.
* ``mlflow`` (extra ``mlflow``): ``ray.air.integrations.mlflow.MLflowLoggerCallback``,
  one MLflow run per trial (params: the trial's varying keys; metrics: every report),
  experiment named after the search, stored in a local ``mlruns/`` folder (file store,
  in the folder the search was launched from; MLflow 3 keeps the file store in
  maintenance mode, so ``MLFLOW_ALLOW_FILE_STORE=true`` is set for it) unless
  ``tracking_uri`` is given (e.g. ``sqlite:///mlflow.db`` or a server URL).
  Options: ``tracking_uri``, ``experiment_name``, ``tags``, ``save_artifact``.
* ``wandb`` (extra ``wandb``): ``ray.air.integrations.wandb.WandbLoggerCallback``,
  offline (files under ``trials/<name>/wandb/``, ``wandb sync`` uploads them later)
  unless ``mode: online`` is given. Options: ``project`` (default: the search name),
  ``group``, ``entity``, ``mode`` (offline | online | disabled).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError

TRACKERS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "tensorboard": {},
    "mlflow": {"tracking_uri": str, "experiment_name": str, "tags": dict, "save_artifact": bool},
    "wandb": {"project": str, "group": str, "entity": str, "mode": str},
}
"""Tracker names and the options each accepts (with their types)."""
PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}
"""The Python package each tracker imports (installed by the extra of the same name)."""
WANDB_MODES = ("offline", "online", "disabled")
DEFAULT_MLFLOW_DIR = "mlruns"


def tracking_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``tracking`` setting (None if it is)."""
    if value is None:
        return None
    known = ", ".join(TRACKERS)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        for name in value:
            if name not in TRACKERS:
                return f"unknown tracker {name!r} (known: {known})"
        if len(set(value)) != len(value):
            return f"a tracker is listed twice: {value!r}"
        return None
    if not isinstance(value, dict):
        return f"expected a list of trackers ({known}) or a mapping of tracker to options, got {value!r}"
    for name, options in value.items():
        if name not in TRACKERS:
            return f"unknown tracker {name!r} (known: {known})"
        if options is None:
            continue
        if not isinstance(options, dict):
            return f"{name}: expected a mapping of options, got {options!r}"
        allowed = TRACKERS[name]
        for key, option in options.items():
            if key not in allowed:
                names = ", ".join(allowed) or "none"
                return f"{name}.{key}: unknown option (known: {names})"
            if not isinstance(option, allowed[key]) or (allowed[key] is not bool and isinstance(option, bool)):
                return f"{name}.{key}: expected a {allowed[key].__name__}, got {option!r}"
        if name == "wandb" and options.get("mode", "offline") not in WANDB_MODES:
            return f"wandb.mode: expected one of {', '.join(WANDB_MODES)}, got {options['mode']!r}"
    return None


def normalize_tracking(value: Any) -> dict[str, dict[str, Any]]:
    """``{tracker: options}`` of a checked ``tracking`` value (``{}`` when None)."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return {name: {} for name in value}
    return {name: dict(options or {}) for name, options in value.items()}


def parse_flag(text: str) -> list[str]:
    """``--tracking mlflow,wandb`` as a list of tracker names (checked)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    why = tracking_problem(names) if names else "expected one or more of " + ", ".join(TRACKERS)
    if why:
        raise UserError(f"--tracking: {why}")
    return names


def check_available(tracking: dict[str, dict[str, Any]]) -> None:
    """Refuse a tracker whose package is not installed (before any long work)."""
    for name in tracking:
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise UserError(
                f"tracking: {name} needs the {package!r} package, which is not installed: "
                f"pip install 'mtlsearch[{name}]' (or drop {name} from tracking)"
            )


def mlflow_uri(options: dict[str, Any], cwd: str | Path) -> str:
    """The MLflow tracking URI: the option, else ``file://<cwd>/mlruns``."""
    uri = options.get("tracking_uri")
    if uri:
        return str(uri)
    return (Path(cwd).resolve() / DEFAULT_MLFLOW_DIR).as_uri()


def make_callbacks(tracking: dict[str, dict[str, Any]], *, name: str, exp_dir: Any, cwd: str | Path) -> list[Any]:
    """Tune logger callbacks for the trackers of a search named ``name`` stored in
    ``exp_dir`` (a folder or a :class:`mtlsearch.storage.Location`; W&B's offline files go
    there when it is local, else into ``cwd``)."""
    check_available(tracking)
    callbacks: list[Any] = []
    if "mlflow" in tracking:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        opts = tracking["mlflow"]
        uri = mlflow_uri(opts, cwd)
        if uri.startswith("file:"):
            # MLflow 3 keeps the file store in maintenance mode and refuses it unless asked.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        callbacks.append(MLflowLoggerCallback(
            tracking_uri=uri,
            experiment_name=opts.get("experiment_name") or name,
            tags=opts.get("tags"),
            save_artifact=bool(opts.get("save_artifact", False)),
        ))
    if "wandb" in tracking:
        from ray.air.integrations.wandb import WandbLoggerCallback

        opts = tracking["wandb"]
        mode = opts.get("mode", "offline")
        if mode != "online":
            # Ray asks for an API key unless the mode is offline/disabled in the environment.
            os.environ.setdefault("WANDB_MODE", mode)
        extra = {k: opts[k] for k in ("entity",) if k in opts}
        local = getattr(exp_dir, "local", exp_dir) if getattr(exp_dir, "is_local", True) else Path(cwd)
        callbacks.append(WandbLoggerCallback(
            project=opts.get("project") or name, group=opts.get("group"), mode=mode,
            dir=str(local), **extra,
        ))
    return callbacks


__all__ = [
    "PACKAGES",
    "TRACKERS",
    "check_available",
    "make_callbacks",
    "mlflow_uri",
    "normalize_tracking",
    "parse_flag",
    "tracking_problem",
]
