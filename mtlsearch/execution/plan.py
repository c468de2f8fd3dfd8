"""What a search will run, shown and checked before Ray starts.

Contract: :func:`check_trials` builds every planned trial's model on the ``meta`` device so
that a combination of keys that cannot work is one ``error:`` before any data is
generated; :func:`dry_run` is the text ``mtlsearch search --dry-run`` prints (the trials of
a grid or random search, or an Optuna search's space, seeds and baselines to run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mtlsearch.config import load_config
from mtlsearch.execution.trial import absolutize
from mtlsearch.layout import OPTUNA_DB
from mtlsearch.space import SEED_KEY, Space, describe, format_table
from mtlsearch.storage import Location, study_path
from mtlsearch.storage import parse as parse_storage


def check_trials(space: Space, trials: list[dict[str, Any]] | None) -> int:
    """Build every planned trial's model on the ``meta`` device (an Optuna search: its
    static config) so a combination of keys that cannot work fails before any data is
    generated or Ray starts; returns the number of distinct models checked."""
    from mtlsearch.models import check_buildable

    seen: set[str] = set()
    for values in trials if trials is not None else [{}]:
        cfg = load_config(absolutize(space.tree(values), os.getcwd()))
        shape = cfg.to_dict()
        for irrelevant in ("train", "eval", "name"):
            shape.pop(irrelevant, None)
        key = json.dumps(shape, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        varied = {k: v for k, v in values.items() if k in space.ablated_keys} or None
        check_buildable(cfg, varied)
    return len(seen)


def dry_run(space: Space, exp_dir: str | Path | Location) -> str:
    """The text ``--dry-run`` prints: the trials of a grid/random search or the space."""
    exp_dir = parse_storage(exp_dir)
    lines = [describe(space), f"results would go to: {exp_dir}"]
    if space.adaptive_initial is not None:
        lines.append(f"adaptive replication: every configuration on seeds 0..{space.adaptive_initial - 1} "
                     f"first, then one more seed at a time (up to {len(space.seeds)}) while its 95% interval "
                     f"of {space.search.metric} overlaps the best configuration's; the trials below are the "
                     "most it can run")
    study = str(exp_dir / OPTUNA_DB)
    if not exp_dir.is_local:
        study = f"{study_path(exp_dir)} on this machine, copied to {study}"
    if space.search.algorithm == "optuna":
        lines.append(
            f"optuna {space.search.sampler.upper()} (seed {space.search.seed}) samples {space.search.num_samples} "
            f"configuration(s) from (study {space.name!r} in {study}), each on {len(space.seeds)} seed(s) "
            f"({space.search.num_samples * len(space.seeds)} trials; the sampler learns each configuration's "
            f"seed mean):"
        )
        width = max((len(p.key) for p in space.params), default=0)
        lines += [f"  {p.key.ljust(width)}  {p.describe()}" for p in space.params]
        lines.append(f"  {SEED_KEY.ljust(width)}  {', '.join(map(str, space.seeds))}")
    else:
        trials = space.expand()
        columns = [*(p.key for p in space.params), SEED_KEY]
        rows = [{"#": i, **t} for i, t in enumerate(trials)]
        lines.append(f"{len(trials)} trial(s):")
        lines.append(format_table(rows, ["#", *columns]))
    if space.baselines:
        from mtlsearch.execution.baselines import baseline_groups, missing_tasks

        groups = baseline_groups(space, None if space.search.algorithm == "optuna" else space.expand())
        todo = missing_tasks(exp_dir.parent, groups)
        total = sum(len(g["tasks"]) for g in groups.values())
        lines.append(f"single-task baselines: {total} run(s) needed, {len(todo)} not cached yet")
    return "\n".join(lines)


__all__ = ["check_trials", "dry_run"]
