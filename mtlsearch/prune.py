"""What a finished search keeps of its checkpoints: the ``checkpoints:`` policy of a space,
applied when ``mtlsearch search`` ends and by ``mtlsearch prune SEARCH``.

Contract: while a trial runs it keeps what resume needs (Tune's last checkpoints, each a
whole ``checkpoint.pt``: weights, optimizer, schedule, RNG). A policy
(:class:`~mtlsearch.space.spec.CheckpointPolicy`: ``keep: K``, ``others: half|fp32|none``)
ranks the configurations of the FINISHED trials by their mean over seeds of the search's
metric (:mod:`mtlsearch.report.configs`, the ranking of ``mtlsearch best``; several
metrics: the Pareto set of the means, then the rest, each ordered by the first metric).
Every seed of the best K configurations keeps its last checkpoint whole; every other
finished trial keeps its last weights only (model state, no optimizer state) in float16
(``half``; a tensor float16 cannot hold stays float32) or float32 (``fp32``), or no
checkpoint (``none``). Older checkpoints of a finished trial are removed either way.

A weights-only checkpoint is ``{"model", "config", "num_classes", "step", "pruned":
{"precision": "half"|"fp32"}}``: :func:`mtlsearch.checkpoint.load_trained_model` loads it
(``load_state_dict`` casts to the model's float32), training cannot resume from it.

Safety: only a folder with mtlsearch's :data:`~mtlsearch.layout.META_FILE` is pruned, only
its trial folders (direct children, no symbolic links) whose status, read like ``mtlsearch
status`` reads it (:func:`mtlsearch.report.collect.collect`), is finished, and in them only
``checkpoint_*/checkpoint.pt`` files that load with ``torch.load(weights_only=True)`` as
mtlsearch checkpoints; a checkpoint folder is removed only once empty. Errored, running,
pending and interrupted trials are never touched (``--resume`` continues them from their
checkpoints); a PBT search with any trial not finished is refused (PBT restarts trials
from other trials' checkpoints). A file is replaced atomically (written beside it, renamed).
Nothing is ranked, so nothing is pruned, while no finished trial reported the metric.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlsearch.errors import UserError
from mtlsearch.layout import (
    CHECKPOINT_TMP_FILE,
    FINISHED,
    META_FILE,
    checkpoint_files,
)
from mtlsearch.records import SearchMeta
from mtlsearch.space.spec import CheckpointPolicy

OTHERS = ("half", "fp32", "none")
"""What a finished trial outside the best configurations may keep."""
PRUNED_KEY = "pruned"
"""Entry of a weights-only checkpoint: ``{"precision": "half" | "fp32"}``."""
KEPT = ("model", "config", "num_classes", "step")
"""Checkpoint entries a weights-only checkpoint keeps."""


@dataclass
class TrialPlan:
    """What the policy does to one trial folder, and the bytes before and after."""

    trial_id: str
    folder: Path
    status: str
    rank: int | None
    """1-based rank of the trial's configuration (None: not ranked)."""
    action: str
    """``whole`` (best K), ``half``, ``fp32``, ``none``, or ``left`` (not touched)."""
    why: str = ""
    files: list[Path] = field(default_factory=list)
    """The trial's checkpoint files, oldest first."""
    before: int = 0
    after: int = 0


@dataclass
class Plan:
    """The policy applied to a search folder: one :class:`TrialPlan` per trial folder."""

    folder: Path
    policy: CheckpointPolicy
    metric: str
    trials: list[TrialPlan]
    notes: list[str] = field(default_factory=list)

    @property
    def before(self) -> int:
        return sum(t.before for t in self.trials)

    @property
    def after(self) -> int:
        return sum(t.after for t in self.trials)


def size_text(n: float) -> str:
    """Bytes as ``12.3 MiB`` (binary units, like ``du -h``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_policy(policy: CheckpointPolicy) -> str:
    """The policy in words."""
    kept = {"half": "their last weights in float16", "fp32": "their last weights in float32",
            "none": "no checkpoint"}[policy.others]
    if policy.keep == 0:
        return f"every finished trial keeps {kept}"
    return (f"the best {policy.keep} configuration(s) keep every seed's last whole checkpoint; "
            f"the other finished trials keep {kept}")


def stored_policy(meta: SearchMeta) -> CheckpointPolicy | None:
    """The policy recorded in a search's metadata (its ``checkpoints`` field), or None."""
    raw = meta.checkpoints
    if not isinstance(raw, dict):
        return None
    keep, others = raw.get("keep", 1), raw.get("others", "half")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0 or others not in OTHERS:
        return None
    return CheckpointPolicy(keep=keep, others=others)


# ---------------------------------------------------------------------------
# Reading checkpoints
# ---------------------------------------------------------------------------


def read_state(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (memory-mapped, ``weights_only=True``) if it is an
    mtlsearch checkpoint (a dict with a state dict of tensors under ``model`` and a
    ``config`` mapping), else None."""
    import torch

    from mtlsearch.checkpoint import check_state

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return check_state(state, path, keys=("model", "config"))
    except Exception:  # noqa: BLE001 - anything unreadable or foreign is not ours to touch
        return None


def weights_only(state: dict[str, Any], precision: str) -> dict[str, Any]:
    """``state`` reduced to :data:`KEPT` with its floating-point weights in float16
    (``half``; a tensor whose finite values float16 cannot hold stays float32) or float32."""
    import torch

    model = {}
    for key, tensor in state["model"].items():
        if tensor.is_floating_point():
            if precision == "half":
                half = tensor.to(torch.float16)
                finite = torch.isfinite(tensor)
                tensor = half if bool(torch.isfinite(half)[finite].all()) else tensor.to(torch.float32)
            else:
                tensor = tensor.to(torch.float32)
        model[key] = tensor.contiguous()
    out = {k: state[k] for k in KEPT if k in state and k != "model"}
    return {"model": model, **out, PRUNED_KEY: {"precision": precision}}


class _Counter:
    """A write-only file object that counts the bytes ``torch.save`` would write."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self.n += size
        return size

    def flush(self) -> None:
        return None


def saved_size(state: dict[str, Any]) -> int:
    """Bytes ``torch.save(state, file_object)`` writes, without writing them."""
    import torch

    sink = _Counter()
    torch.save(state, sink)  # type: ignore[arg-type]
    return sink.n


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------


def _ranked_trials(search: Any, metrics: list[str], modes: list[str]) -> dict[str, int]:
    """Trial id -> the 1-based rank of its configuration among the finished ones."""
    from mtlsearch.report import configs as cf

    found = cf.from_search(search, metrics, statuses=(FINISHED,))
    front = cf.rank(found, metrics, modes)
    rest = [c for c in cf.rank(found, metrics[:1], modes[:1]) if all(c is not f for f in front)]
    return {t.trial_id: i + 1 for i, c in enumerate([*front, *rest]) for t in c.trials}


def plan(search_dir: str | Path, policy: CheckpointPolicy | None = None, *, keep: int | None = None,
         others: str | None = None) -> Plan:
    """What ``policy`` does to every trial of the search in ``search_dir`` (nothing done).
    ``policy`` None: the search's own (its metadata), else the default ``keep: 1, others:
    half``; ``keep`` / ``others`` override it."""
    from mtlsearch.best import metrics_and_modes
    from mtlsearch.report.collect import collect

    folder = Path(search_dir)
    if not (folder / META_FILE).is_file():
        raise UserError(f"{folder}: holds no {META_FILE}; not an mtlsearch search (nothing pruned)")
    search = collect(folder)
    base = policy or stored_policy(search.meta) or CheckpointPolicy()
    policy = CheckpointPolicy(keep=base.keep if keep is None else keep,
                              others=base.others if others is None else others)
    if policy.keep < 0 or policy.others not in OTHERS:
        raise UserError(f"checkpoint policy: keep must be >= 0 and others one of {', '.join(OTHERS)}, "
                        f"got keep {policy.keep}, others {policy.others!r}")
    metrics, modes = metrics_and_modes(search.meta, None, None)
    frame = search.results
    statuses = [str(s) for s in frame["status"]] if "status" in frame else []
    scheduler = search.meta.search.scheduler
    if isinstance(scheduler, dict) and scheduler.get("type") == "pbt" and any(s != FINISHED for s in statuses):
        raise UserError(f"{folder}: a PBT search with unfinished or errored trials may restart them from "
                        "other trials' checkpoints; prune it once every trial finished")
    ranks = _ranked_trials(search, metrics, modes)
    metric = ", ".join(f"{m} ({md})" for m, md in zip(metrics, modes))
    out = Plan(folder, policy, metric, [])
    finished = [str(r["trial_id"]) for _, r in frame.iterrows() if r.get("status") == FINISHED]
    if finished and not ranks:
        out.notes.append(f"no finished trial reported {', '.join(metrics)}: nothing ranked, nothing pruned")
    for _, row in frame.iterrows():
        name = str(row.get("trial_dir") or "")
        tid, status = str(row["trial_id"]), str(row.get("status"))
        if not name:
            continue
        tdir = folder / name
        trial = TrialPlan(tid, tdir, status, ranks.get(tid), "left")
        if tdir.is_symlink() or not tdir.is_dir() or tdir.parent != folder:
            trial.why = "not a trial folder of the search"
        else:
            trial.files = [p for p in checkpoint_files(tdir) if p.is_file()
                           and not p.is_symlink() and not p.parent.is_symlink()]
            trial.before = trial.after = sum(p.stat().st_size for p in trial.files)
            if status != FINISHED:
                trial.why = f"{status.lower()}: not finished"
            elif not ranks:
                trial.why = "nothing ranked"
            elif trial.rank is not None and trial.rank <= policy.keep:
                trial.action = "whole"
            else:
                trial.action = policy.others
        out.trials.append(trial)
    return out


# ---------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------


def _remove(path: Path) -> None:
    """Delete a checkpoint file, then its folder if nothing else is left in it."""
    path.unlink()
    with contextlib.suppress(OSError):  # the folder holds something else: left as it is
        path.parent.rmdir()


def _write(state: dict[str, Any], path: Path) -> None:
    """Replace the checkpoint at ``path`` by ``state`` atomically, through a file created
    here (a file already of that name is not ours: it is left, and the prune stops)."""
    import torch

    tmp = path.with_name(CHECKPOINT_TMP_FILE)
    try:
        fh = tmp.open("xb")
    except FileExistsError:
        raise UserError(f"{tmp}: exists and was not written by this prune (an interrupted prune leaves "
                        "it; remove it, then prune again)") from None
    try:
        with fh:  # through a file object, as saved_size counts it
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def apply(trial: TrialPlan, dry_run: bool = False) -> None:
    """Do what ``trial.action`` says to its checkpoint files (``dry_run``: only compute
    ``trial.after``)."""
    if trial.action == "left" or not trial.files:
        return
    states = [(p, read_state(p)) for p in trial.files]
    foreign = [p for p, s in states if s is None]
    if foreign:
        trial.action, trial.why = "left", f"{foreign[0].relative_to(trial.folder)}: not an mtlsearch checkpoint"
        return
    last, last_state = states[-1]
    old = [p for p, _ in states[:-1]]
    after = 0
    if trial.action in ("half", "fp32"):
        assert last_state is not None
        done = (last_state.get(PRUNED_KEY) or {}).get("precision")
        if done == "half" or done == trial.action:
            after = last.stat().st_size  # already weights only (float16 is not widened)
            trial.why = f"already {done} weights"
            if not dry_run and old:
                for p in old:
                    _remove(p)
        else:
            reduced = weights_only(last_state, trial.action)
            after = saved_size(reduced)
            if not dry_run:
                for p in old:
                    _remove(p)
                _write(reduced, last)
                after = last.stat().st_size
    elif trial.action == "whole":
        after = last.stat().st_size
        if (last_state or {}).get(PRUNED_KEY):
            trial.why = "weights only already (pruned before)"
        if not dry_run:
            for p in old:
                _remove(p)
    elif not dry_run:  # none
        for p in trial.files:
            _remove(p)
    del states, last_state
    trial.after = after


def prune(search_dir: str | Path, policy: CheckpointPolicy | None = None, dry_run: bool = False,
          **overrides: Any) -> Plan:
    """Apply ``policy`` (see :func:`plan`) to the search in ``search_dir`` (``dry_run``:
    change nothing); return the plan with each trial's bytes before and after."""
    result = plan(search_dir, policy, **overrides)
    for trial in result.trials:
        apply(trial, dry_run)
    return result


# ---------------------------------------------------------------------------
# Text and commands
# ---------------------------------------------------------------------------

ACTION_TEXT = {
    "whole": "last checkpoint whole (best)",
    "half": "last weights, float16",
    "fp32": "last weights, float32",
    "none": "no checkpoint",
    "left": "left as it is",
}


def plan_lines(result: Plan, dry_run: bool = False) -> list[str]:
    """The per-trial table and the total of a (dry) run."""
    from mtlsearch.space.text import format_table

    rows = [{"trial": t.trial_id, "status": t.status, "rank": t.rank,
             "keeps": ACTION_TEXT[t.action] + (f" ({t.why})" if t.why else ""),
             "before": size_text(t.before), "after": size_text(t.after),
             "freed": size_text(t.before - t.after)} for t in result.trials]
    verb = "would free" if dry_run else "freed"
    lines = [f"checkpoints of {result.folder}, ranked by the configurations' mean {result.metric} over seeds: "
             f"{describe_policy(result.policy)}"]
    if rows:
        lines.append(format_table(rows, ["trial", "status", "rank", "keeps", "before", "after", "freed"]))
    lines.append(f"total: {size_text(result.before)} -> {size_text(result.after)}, "
                 f"{verb} {size_text(result.before - result.after)}"
                 + (" (dry run: nothing changed)" if dry_run else ""))
    lines += [f"note: {n}" for n in result.notes]
    return lines


def after_search(exp_dir: Any, policy: CheckpointPolicy | None) -> None:
    """The end of ``mtlsearch search``: apply the space's policy to the search folder
    (a :class:`mtlsearch.storage.Location`) and print one line; a problem is a warning
    (the search itself succeeded)."""
    if policy is None:
        return
    if not exp_dir.is_local:
        print(f"checkpoints: the policy applies to local search folders only; {exp_dir} keeps "
              "every checkpoint")
        return
    try:
        result = prune(exp_dir.local, policy)
    except (UserError, OSError) as err:
        print(f"warning: checkpoint policy not applied ({err}); apply it later with "
              f"mtlsearch prune {exp_dir.local}")
        return
    touched = [t for t in result.trials if t.action != "left"]
    print(f"checkpoints: {describe_policy(policy)}: {len(touched)} finished trial(s), "
          f"{size_text(result.before)} -> {size_text(result.after)} "
          f"(freed {size_text(result.before - result.after)}; details: mtlsearch prune "
          f"{exp_dir.local} --dry-run)")
    for note in result.notes:
        print(f"checkpoints: {note}")


def run_cli(args: argparse.Namespace) -> int:
    """``mtlsearch prune SEARCH [--keep K] [--others half|fp32|none] [--dry-run]``."""
    folder = Path(args.search_dir)
    if not folder.is_dir():
        raise UserError(f"search folder not found: {folder}")
    if args.keep is not None and args.keep < 0:
        raise UserError(f"--keep: expected a number of configurations >= 0, got {args.keep}")
    result = prune(folder, dry_run=args.dry_run, keep=args.keep, others=args.others)
    for line in plan_lines(result, args.dry_run):
        print(line)
    return 0


__all__ = [
    "KEPT",
    "OTHERS",
    "PRUNED_KEY",
    "Plan",
    "TrialPlan",
    "after_search",
    "apply",
    "describe_policy",
    "plan",
    "plan_lines",
    "prune",
    "read_state",
    "run_cli",
    "saved_size",
    "size_text",
    "stored_policy",
    "weights_only",
]
