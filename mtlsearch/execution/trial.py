"""One Tune trial of a search: :func:`trial`, the function trainable ``mtlsearch search`` runs.

Contract: ``trial(config, ctx)`` builds the trial's whole config (the planned row of a
grid/random search, or Tune's sampled values; paths made absolute against the launch
folder), writes it as ``<search>/<trial id>/config.yaml`` and trains it in this process,
rank 0 of a DDP group with peer actors for multi-worker trials (:mod:`mtlsearch.execution.peers`;
the trial's placement group holds one bundle per worker). A failure a retry cannot fix
(a user error, a NaN loss) writes :data:`FATAL_FILE`, so Tune's retries fail at once;
``--resume`` clears those markers. The driver (:mod:`mtlsearch.execution.search`) builds
the Tuner around it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mtlsearch.config import config_fields, load_config, set_dotted
from mtlsearch.errors import NonFiniteLossError, UserError
from mtlsearch.execution.phases import mark
from mtlsearch.layout import CONFIG_FILE, FATAL_FILE, TENSORBOARD_DIR
from mtlsearch.records import TrialContext
from mtlsearch.space import INDEX_KEY, Space, baseline_hash
from mtlsearch.storage import Location
from mtlsearch.storage import parse as parse_storage

PATH_KEYS = ("data.root", "data.synth.cache_dir", "model.pretrained_path", "model.weights")
"""Config paths made absolute (relative to the launch folder) before trials run, since
Tune runs trials in their own working directories."""


def absolutize(tree: dict[str, Any], cwd: str) -> dict[str, Any]:
    """Make the config's relative file paths absolute against ``cwd`` (in place),
    including relative defaults (``data.synth.cache_dir``) the tree does not set."""
    defaults = config_fields()
    for dotted in PATH_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) and leaf in node else defaults[dotted]
        if isinstance(value, str) and value and not os.path.isabs(value):
            set_dotted(tree, dotted, os.path.normpath(os.path.join(cwd, value)))
    return tree


def trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """One Tune trial: build the config, run its training, report through Tune."""
    from ray import tune

    from mtlsearch.execution.trainer import run_in_process

    # Ray logs a line per persisted checkpoint ("Checkpoint successfully created at");
    # the trial's own progress lines already say when it evaluates.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    space: Space = ctx.space
    planned = ctx.planned
    if planned is not None and INDEX_KEY in config:
        # The planned row, not Tune's copy: a trial still pending when a search was
        # interrupted comes back from Tuner.restore with unresolved sample_from values.
        values = dict(planned[config[INDEX_KEY]])
        # Keys PBT perturbs when it exploits another trial come from Tune's config.
        values.update({k: config[k] for k in ctx.mutable if k in config})
    else:
        values = {k: v for k, v in config.items() if k != INDEX_KEY}
    tune_ctx = tune.get_context()
    trial_id = tune_ctx.get_trial_id()
    # In the search folder itself (shared storage or a URI), not Tune's node-local staging.
    fatal = parse_storage(ctx.exp_dir) / trial_id / FATAL_FILE
    if fatal.is_file():
        # A retry after a user error or a NaN loss would fail the same way: fail at once.
        raise RuntimeError(fatal.read_text().strip())
    if os.path.isdir(ctx.cwd):
        # Tune starts trials in their own folder; the space's relative paths (weights,
        # data roots) mean what they meant where the search was launched.
        os.chdir(ctx.cwd)
    tree = absolutize(space.tree(values), ctx.cwd)
    cfg = load_config(tree)
    cfg.name = f"{space.name}/{trial_id}"
    cfg = with_baselines(cfg, ctx.baselines.get(baseline_hash(space.baseline_config(values))))
    write_resolved_config(cfg, fatal.parent / CONFIG_FILE)
    tensorboard_dir = Path(tune_ctx.get_trial_dir()) / TENSORBOARD_DIR
    mark("trial_start", trial_id)
    res = space.resources
    try:
        run_in_process(cfg, tensorboard_dir=tensorboard_dir, workers=res.workers, cpus_per_worker=res.cpus_per_worker,
                       gpus_per_worker=res.gpus_per_worker)
    except (UserError, NonFiniteLossError) as err:
        message = f"trial {trial_id} failed: {type(err).__name__}: {err}"
        _write_fatal(fatal, message)
        raise RuntimeError(message) from None
    finally:
        mark("trial_end", trial_id)


def with_baselines(cfg: Any, baselines: dict[str, Any] | None) -> Any:
    """``cfg`` with a trial's single-task baselines folded into ``eval.baselines``: the one
    way they travel, to the training loop and to ``config.yaml`` alike."""
    if not baselines:
        return cfg
    return load_config(cfg, {"eval.baselines": {**cfg.eval.baselines, **baselines}})


def write_resolved_config(cfg: Any, path: str | Path | Location) -> None:
    """The trial's whole config as trained, so ``mtlsearch train`` on this file reproduces
    the trial (``mtlsearch best``)."""
    from mtlsearch.config.load import to_yaml

    parse_storage(path).write_text(to_yaml(cfg))  # atomic, local or remote


def _write_fatal(path: Location, message: str) -> None:
    path.write_text(message + "\n")


__all__ = ["PATH_KEYS", "absolutize", "trial", "with_baselines", "write_resolved_config"]
