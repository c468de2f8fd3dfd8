"""``mtlsearch search``: run a YAML search space with Ray Tune (+ Optuna, ASHA).

Each Tune trial is the FUNCTION trainable :func:`mtlsearch.execution.trial.trial`: it trains in
its own process, which reserves one worker's CPUs/GPUs; a multi-worker trial reserves a
placement group of one bundle per worker, and its process (rank 0) starts peer actors in
the other bundles (:mod:`mtlsearch.execution.peers`). Tune owns that placement group, so a trial
a scheduler stops, or that dies, frees everything. A failing trial re-raises, so Tune
records it as errored (``error.txt``), retries it after infrastructure failures, and the
search goes on. This module builds the Tuner around it and runs the search.

How trials are generated:

* ``grid``/``random``: the trials are expanded up front (:meth:`Space.expand`),
  numbered by ``trial_index`` (a ``tune.grid_search``) and each key is a
  ``tune.sample_from`` reading the trial's row, so every ``params.json`` holds the
  plain dotted keys. Conditional keys whose condition fails are recorded as None.
* ``optuna``: ``OptunaSearch`` with a define-by-run space (conditional keys are
  suggested only when active), the sampler of ``search.sampler`` seeded by
  ``search.seed`` (:mod:`mtlsearch.execution.strategies`), study ``<name>`` stored in
  ``trials/<name>/optuna.db`` (SQLite RDB storage, so the study outlives the driver;
  Tune also pickles the searcher into its experiment state for ``--resume``),
  multi-objective via metric/mode lists, behind a ``ConcurrencyLimiter``.

Layout of ``trials/<name>/``: ``mtlsearch.json`` (what the report reads first),
Tune's experiment state and one folder per trial named by its trial id
(``params.json``, ``result.json``, ``progress.csv``, ``error.txt``,
``tensorboard/``, ``checkpoint_*/``) and ``optuna.db`` for Optuna searches. Single-task baselines are cached in
``trials/_baselines/`` (:mod:`mtlsearch.execution.baselines`).

Storage (``--storage``) is a local folder or a ``pyarrow.fs`` URI (:mod:`mtlsearch.storage`),
checked before any data is generated or Ray starts; Tune writes there directly.
With a URI the Optuna study stays a local SQLite file of the driver
(:func:`mtlsearch.storage.study_path`) and is copied to ``<search>/optuna.db`` after the
search or its interruption; ``--resume`` copies it back first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mtlsearch.config import load_config
from mtlsearch.errors import (
    UserError,
    debug_enabled,
    internal_error_line,
    log_internal_error,
    set_error_folder,
)
from mtlsearch.execution import map_legacy_modules
from mtlsearch.execution.plan import check_trials, dry_run
from mtlsearch.execution.trial import absolutize, trial
from mtlsearch.layout import BASELINES_DIR, CONFIG_FILE, FATAL_FILE, FINISHED, META_FILE, OPTUNA_DB
from mtlsearch.outputs import check_run_folder
from mtlsearch.records import SearchMeta, TrialContext
from mtlsearch.space import (
    INDEX_KEY,
    SEED_KEY,
    Space,
    load_space,
    plain,
)
from mtlsearch.storage import (
    Location,
    open_storage,
    pull_study,
    push_study,
    study_path,
    study_storage,
)
from mtlsearch.storage import parse as parse_storage
from mtlsearch.tasks import TASKS

DEFAULT_MAX_FAILURES = 2
REUSE_ACTORS = True
"""A finished trial's process (torch, timm and mtlsearch imported) runs the next trial
that fits it, instead of a new process per trial (seconds each; ``mtlsearch bench
search``). A multi-worker trial's peers are not reused: they end with their trial."""


def _trial_dirname(t: Any) -> str:
    """Stable trial folder names: the Tune trial id (no timestamps)."""
    return str(t.trial_id)


class _Row:
    """``tune.sample_from`` callable: the value of ``key`` in the trial's planned row."""

    def __init__(self, table: list[dict[str, Any]], key: str) -> None:
        self.table = table
        self.key = key

    def __call__(self, config: Any) -> Any:
        return self.table[config[INDEX_KEY]][self.key]


# ---------------------------------------------------------------------------
# Building the Tuner
# ---------------------------------------------------------------------------


def _reporter(space: Space) -> Any:
    from ray.tune import CLIReporter

    m = space.search.metric
    metric_cols = ["iteration", *dict.fromkeys([*(m if isinstance(m, list) else [m]), "loss"])]
    return CLIReporter(
        metric_columns=metric_cols,
        parameter_columns=space.ablated_keys,
        max_report_frequency=30,
        max_column_length=24,
    )


def _local_folder(exp_dir: Location) -> str | None:
    """The search folder's local path (None for remote storage)."""
    return str(exp_dir.path) if exp_dir.is_local else None


def build_tuner(
    space: Space, exp_dir: str | Path | Location, trials: list[dict[str, Any]] | None, ctx: TrialContext
) -> Any:
    """A fresh ``Tuner`` for ``space`` storing into ``exp_dir`` (a folder or a URI)."""
    from ray import tune

    exp_dir = parse_storage(exp_dir)

    from mtlsearch.execution.strategies import checkpoints_to_keep
    from mtlsearch.execution.tracking import make_callbacks

    trainable = _trainable(ctx)
    scheduler = _scheduler(space)
    search = space.search
    if search.algorithm == "optuna":
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        from mtlsearch.execution.strategies import make_sampler

        storage = study_storage(exp_dir)
        searcher = OptunaSearch(
            space=space.define_by_run(),
            metric=search.metric,
            mode=search.mode,
            sampler=make_sampler(search),
            study_name=exp_dir.name,
            storage=storage,
        )
        if space.adaptive_initial is not None:  # more seeds while still in contention
            from mtlsearch.execution.replicate import AdaptiveSeeds

            searcher = AdaptiveSeeds(searcher, space.seeds, space.adaptive_initial, search.metric,
                                     search.mode, _local_folder(exp_dir), max_configs=search.num_samples)
        elif len(space.seeds) > 1:  # every suggestion on every seed; Optuna learns their mean
            from mtlsearch.execution.replicate import SeedReplicator

            metrics = search.metric if isinstance(search.metric, list) else [search.metric]
            searcher = SeedReplicator(searcher, space.seeds, metrics)
        tune_config = tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent_trials),
            scheduler=scheduler,
            num_samples=search.num_samples * len(space.seeds),
            trial_dirname_creator=_trial_dirname,
            reuse_actors=REUSE_ACTORS,
        )
        param_space: dict[str, Any] = {}
    elif space.adaptive_initial is not None:  # planned rows, seeds added while in contention
        from ray.tune.search import ConcurrencyLimiter

        from mtlsearch.execution.replicate import AdaptiveSeeds

        assert trials is not None
        searcher = AdaptiveSeeds(trials, space.seeds, space.adaptive_initial, search.metric,
                                 search.mode, _local_folder(exp_dir))
        tune_config = tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent_trials),
            scheduler=scheduler,
            num_samples=len(trials),
            trial_dirname_creator=_trial_dirname,
            reuse_actors=REUSE_ACTORS,
        )
        param_space = {}
    else:
        assert trials is not None
        param_space = {INDEX_KEY: tune.grid_search(list(range(len(trials))))}
        for key in [*(p.key for p in space.params), SEED_KEY]:
            param_space[key] = tune.sample_from(_Row(trials, key))
        tune_config = tune.TuneConfig(
            scheduler=scheduler,
            num_samples=1,
            max_concurrent_trials=space.max_concurrent_trials,
            trial_dirname_creator=_trial_dirname,
            reuse_actors=REUSE_ACTORS,
        )
    storage_path, storage_filesystem = exp_dir.parent.ray_storage()
    run_config = tune.RunConfig(
        name=exp_dir.name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        failure_config=tune.FailureConfig(max_failures=max_failures(space)),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=checkpoints_to_keep(space)),
        progress_reporter=_reporter(space),
        verbose=1,
        callbacks=make_callbacks(space.tracking, name=exp_dir.name, exp_dir=exp_dir, cwd=ctx.cwd),
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _trainable(ctx: TrialContext) -> Any:
    """The Tune trainable with its reservation: one worker's CPUs/GPUs for the trial's
    process, and for multi-worker trials a placement group with one such bundle per
    worker (bundle 0 is the trial's process, rank 0; the peers take the others)."""
    from ray import tune

    res = ctx.space.resources
    bundle = {"CPU": float(res.cpus_per_worker)}
    if res.gpus_per_worker > 0:
        bundle["GPU"] = float(res.gpus_per_worker)
    resources = tune.PlacementGroupFactory([bundle] * res.workers, strategy="PACK")
    return tune.with_resources(tune.with_parameters(trial, ctx=ctx), resources)


def max_failures(space: Space) -> int:
    """Retries of a trial after an infrastructure failure (a node or worker died); user
    errors and NaN losses fail once (:data:`FATAL_FILE`)."""
    value = getattr(space.search, "max_failures", None)
    return DEFAULT_MAX_FAILURES if value is None else int(value)


def _scheduler(space: Space) -> Any:
    from mtlsearch.execution.strategies import make_scheduler

    return make_scheduler(space)


# ---------------------------------------------------------------------------
# Metadata, dry run, summary
# ---------------------------------------------------------------------------


def metadata(
    space: Space, exp_dir: str | Path | Location, trials: list[dict[str, Any]] | None,
    baselines: dict[str, Any] | None, launch_dir: str | None = None,
) -> SearchMeta:
    """The search folder's metadata (:class:`~mtlsearch.records.SearchMeta`)."""
    exp_dir = parse_storage(exp_dir)
    cfg = space.static_config()
    s = space.search
    return SearchMeta.parse({
        "name": exp_dir.name,
        "space_path": str(space.path.resolve()),
        "launch_dir": launch_dir or os.getcwd(),
        "space": space.to_json(),
        "profile": space.profile,
        "overrides": space.overrides,
        "ablated_keys": space.ablated_keys,
        "baseline": plain(space.baseline),
        "paper": space.paper,
        "search": {
            "algorithm": s.algorithm,
            "metric": s.metric,
            "mode": s.mode,
            "num_samples": s.num_samples,
            "seed": s.seed,
            "seeds": space.seeds,
            "scheduler": vars(space.scheduler) if space.scheduler else None,
            "resources": vars(space.resources),
            "max_concurrent_trials": space.max_concurrent_trials,
            "num_trials": len(trials) if trials is not None else s.num_samples * len(space.seeds),
            "adaptive_seeds": ({"initial": space.adaptive_initial, "max": len(space.seeds)}
                               if space.adaptive_initial is not None else None),
            "index_key": INDEX_KEY,
            "optuna_storage": str(exp_dir / OPTUNA_DB) if s.algorithm == "optuna" else None,
            "sampler": s.sampler if s.algorithm == "optuna" else None,
        },
        "cli_sections": space.cli_sections,
        "tracking": space.tracking,
        "checkpoints": vars(space.checkpoints) if space.checkpoints else None,
        "tasks": {
            t: {"weight": w, "metric": f"{t}_{TASKS[t].metric}",
                "mode": TASKS[t].mode}
            for t, w in cfg.tasks.items()
        },
        "single_task_baselines": baselines,
        "planned_trials": trials,
        "static_config": cfg.to_dict(),
    })


def trial_statuses(results: Any) -> dict[str, str]:
    """Trial folder name -> Tune status (TERMINATED, ERROR, RUNNING, ...) of a ResultGrid's
    experiment, read back through the public :class:`ray.tune.ExperimentAnalysis`; empty
    when Tune's saved state cannot be read (every trial without an error then counts as
    finished)."""
    from ray.tune import ExperimentAnalysis

    try:
        analysis = ExperimentAnalysis(results.experiment_path, storage_filesystem=results.filesystem)
    except (ValueError, OSError) as err:
        print(f"warning: cannot read the trials' statuses back ({str(err).splitlines()[0]})",
              file=sys.stderr)
        return {}
    return {Path(t.path).name: t.status for t in analysis.trials if t.path}


def summarize(results: Any, exp_dir: Location, space: Space) -> tuple[int, int]:
    """Print N finished / M errored, the best configuration by its mean over seeds (or the
    Pareto set of the means: :func:`mtlsearch.report.configs.summary_lines`), where results are."""
    import math

    from mtlsearch.report.configs import Trial, summary_lines

    finished, errored, unfinished = 0, 0, 0
    metrics = space.search.metric if isinstance(space.search.metric, list) else [space.search.metric]
    modes = space.search.mode if isinstance(space.search.mode, list) else [space.search.mode]
    done: list[Trial] = []
    statuses = trial_statuses(results)
    for result in results:
        if result.error is not None:
            errored += 1
            continue
        if statuses.get(Path(result.path).name, FINISHED) != FINISHED:
            unfinished += 1
            continue
        finished += 1
        values = {m: (result.metrics or {}).get(m) for m in metrics}
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values()):
            config = dict(result.config or {})
            done.append(Trial(Path(result.path).name, config.get(SEED_KEY), config,
                              {m: float(v) for m, v in values.items()}))
    stopped = f", {unfinished} not finished (interrupted: continue with --resume)" if unfinished else ""
    print(f"search {exp_dir.name!r}: {finished} finished, {errored} errored{stopped}; "
          f"results in {exp_dir}")
    for line in summary_lines(done, metrics, modes):
        print(line)
    if errored:
        print(f"errored trials keep their error in {exp_dir / '<trial id>' / 'error.txt'}; "
              "continue with --resume")
    print(f"report: mtlsearch report {exp_dir}")
    return finished, errored


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def _load_for_resume(args: argparse.Namespace, exp_dir: Location) -> Space:
    """Re-read the space for ``--resume``; profile/overrides default to the stored ones."""
    meta = SearchMeta.read(exp_dir)
    if meta is None:
        raise UserError(f"--resume: {exp_dir} holds no {META_FILE}; not an mtlsearch search")
    if isinstance(meta.overrides, dict):
        raise UserError(f"--resume: {exp_dir / META_FILE}: 'overrides' must be a list of key=value strings")
    profile = args.profile if args.profile is not None else meta.profile
    overrides = args.overrides or meta.overrides or []
    stored_sections = meta.cli_sections or {}
    space = load_space(args.space, profile, overrides, cli_sections(args) or stored_sections)
    if space.to_json() != meta.space or profile != meta.profile or list(overrides) != list(meta.overrides or []):
        raise UserError(
            f"--resume: {args.space} (profile {profile}, --set {overrides}) differs from the "
            f"search stored in {exp_dir}; resume with the same space, or start a new search with --name"
        )
    return space


def _init_ray(address: str | None) -> None:
    """Start local Ray (dashboard on localhost) or join the cluster at ``address``."""
    from mtlsearch.execution.cluster import connect

    url = connect(address, num_cpus=None if address else os.cpu_count() or 1)
    if url:
        print(f"Ray dashboard: {url}", flush=True)


def run_search(
    space: Space, storage: str | Path | Location, name: str, *, address: str | None = None,
    resume: bool = False
) -> int:
    """Run (or resume) ``space`` into ``storage/name`` (a folder or a ``pyarrow.fs`` URI,
    :mod:`mtlsearch.storage`); return the exit status."""
    storage = parse_storage(storage)
    exp_dir = storage / name
    trials = None if space.search.algorithm == "optuna" else space.expand()
    cwd = os.getcwd()

    def prepare(tree: dict[str, Any]) -> dict[str, Any]:
        return absolutize(tree, cwd)

    from mtlsearch.execution.cluster import TUNE_ENV, set_env
    from mtlsearch.execution.strategies import mutable_keys

    set_env(TUNE_ENV)
    _init_ray(address)

    # Generate datasets once here rather than in concurrent trials.
    from mtlsearch.data.pipeline import needs_cameras, resolve_root

    seen: set[str] = set()
    for values in trials if trials is not None else [{}]:
        cfg = load_config(prepare(space.tree(values)))
        # The dataset, and whether this trial needs its cameras (checked by resolve_root).
        key = json.dumps([plain(vars(cfg.data)), needs_cameras(cfg)], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            resolve_root(cfg)

    baselines_meta = None
    baselines: dict[str, Any] = {}
    if space.baselines:
        from mtlsearch.execution.baselines import baseline_groups, ensure_baselines

        groups = baseline_groups(space, trials)
        try:
            baselines = ensure_baselines(space, storage, groups, prepare=prepare)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        baselines_meta = {
            key: {"path": str(storage / BASELINES_DIR / key), "metrics": value}
            for key, value in baselines.items()
        }

    exp_dir.mkdir(parents=True, exist_ok=True)
    set_error_folder(Path(exp_dir.path) if exp_dir.is_local else None)
    metadata(space, exp_dir, trials, baselines_meta, cwd).write(exp_dir)
    ctx = TrialContext(space=space, cwd=cwd, exp_dir=exp_dir.uri, baselines=baselines, planned=trials,
                       mutable=mutable_keys(space))
    from ray import tune

    from mtlsearch.execution.tracking import check_available

    check_available(space.tracking)
    # The Optuna study lives with the driver (SQLite) and, for remote storage, is copied
    # beside the results after the search or an interruption (and back for --resume).
    study = study_path(exp_dir) if space.search.algorithm == "optuna" else None
    if study is not None:
        study.parent.mkdir(parents=True, exist_ok=True)
        if resume:
            pull_study(exp_dir, study)
    start = time.time()
    try:
        if resume:
            # The user may have fixed what failed them: errored trials get a new chance.
            for child in exp_dir.listdir():
                (exp_dir / child / FATAL_FILE).delete_file()
            map_legacy_modules()
            path, filesystem = exp_dir.ray_storage()
            tuner = tune.Tuner.restore(
                path, trainable=_trainable(ctx), resume_unfinished=True, resume_errored=True,
                storage_filesystem=filesystem,
            )
        else:
            tuner = build_tuner(space, exp_dir, trials, ctx)
        n = len(trials) if trials is not None else space.search.num_samples * len(space.seeds)
        print(f"{'resuming' if resume else 'starting'} search {name!r}: {n} trial(s), "
              f"algorithm {space.search.algorithm}, results in {exp_dir}", flush=True)
        results = tuner.fit()
    except KeyboardInterrupt:
        raise
    except Exception as err:  # the search itself failed (not one trial): a bug
        if debug_enabled():
            raise
        print(internal_error_line(err, log_internal_error(err), f"search {name!r} failed"), file=sys.stderr)
        print(f"continue it later with --resume (results so far in {exp_dir})", file=sys.stderr)
        return 1
    finally:
        if study is not None:
            push_study(study, exp_dir)
    summarize(results, exp_dir, space)
    from mtlsearch.prune import after_search

    after_search(exp_dir, space.checkpoints)
    print(f"wall time: {time.time() - start:.0f} s")
    return 0


def cli_sections(args: argparse.Namespace) -> dict[str, Any]:
    """The sections ``--num-samples``, ``--seed``, ``--sampler``, ``--scheduler``,
    ``--max-concurrent-trials`` and ``--tracking`` set (merged over the space's and the
    profile's, key by key, and checked like them)."""
    from mtlsearch.execution.tracking import parse_flag

    out: dict[str, Any] = {}
    search = {
        key: value for key, value in (
            ("num_samples", getattr(args, "num_samples", None)), ("seed", getattr(args, "seed", None)),
            ("sampler", getattr(args, "sampler", None)),
        ) if value is not None
    }
    if search:
        out["search"] = search
    if getattr(args, "scheduler", None) is not None:
        out["scheduler"] = {"type": args.scheduler}
    if getattr(args, "max_concurrent_trials", None) is not None:
        out["max_concurrent_trials"] = args.max_concurrent_trials
    if getattr(args, "tracking", None) is not None:
        out["tracking"] = parse_flag(args.tracking)
    return out


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch search SPACE.yaml [--profile P] [--set k=v] [--storage D] [--name N]
    [--address A] [--resume] [--dry-run]``."""
    storage = open_storage(args.storage)  # a bad URI fails here, before data or Ray
    if args.name is not None:
        check_run_folder(storage, args.name)  # before the name is joined to any path
    if args.resume:
        probe = load_space(args.space, args.profile, args.overrides, cli_sections(args))
        name = args.name or probe.name
        exp_dir = storage / name
        if not exp_dir.is_dir():
            raise UserError(f"--resume: no search in {exp_dir} to resume (drop --resume to start it)")
        space = _load_for_resume(args, exp_dir)
    else:
        space = load_space(args.space, args.profile, args.overrides, cli_sections(args))
        name = args.name or space.name
        exp_dir = storage / name
    if args.name is not None and not args.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"--name: expected letters, digits, '-', '_' or '.', got {args.name!r}")
    exp_dir = check_run_folder(storage, name, name_flag="--name" if args.name else f"{args.space}: name")
    from mtlsearch.execution.cluster import check_address, check_gpus
    from mtlsearch.execution.tracking import check_available

    check_available(space.tracking)
    check_address(args.address)
    res = space.resources
    gpu_note = check_gpus(res.gpus_per_worker, res.workers, args.address, dry_run=args.dry_run)
    check_trials(space, None if space.search.algorithm == "optuna" else space.expand())
    if args.dry_run:
        print(dry_run(space, exp_dir))
        if gpu_note:
            print(gpu_note)
        return 0
    if exp_dir.exists() and not args.resume and getattr(args, "reuse", False):
        from mtlsearch.status import search_state

        if search_state(exp_dir) == "finished":
            print(f"reusing the finished search in {exp_dir} (every planned trial finished); "
                  "nothing to run")
            return 0
        print(f"{exp_dir} holds an unfinished search: continuing it (--resume)", flush=True)
        args.resume = True
        space = _load_for_resume(args, exp_dir)
    if exp_dir.exists() and not args.resume:
        raise UserError(
            f"{exp_dir} already exists: continue it with --resume, or choose another --name "
            "(results are never overwritten)"
        )
    static = space.static_config()
    if static.data.root:  # a broken dataset fails here, before Ray starts
        from mtlsearch.data.check import preflight
        from mtlsearch.data.pipeline import resolve_root

        preflight(static, resolve_root(static))
    return run_search(space, storage, name, address=args.address, resume=args.resume)


__all__ = [
    "CONFIG_FILE",
    "META_FILE",
    "OPTUNA_DB",
    "absolutize",
    "build_tuner",
    "dry_run",
    "metadata",
    "run_cli",
    "run_search",
    "trial",
]
