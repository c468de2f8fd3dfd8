"""Typed records that cross the hallways between search, trial, worker and report.

Contract: :class:`SearchMeta` is the search folder's metadata file
(:data:`mtlsearch.layout.META_FILE`): ``mtlsearch search`` builds and writes it
(:meth:`SearchMeta.write`); ``collect``, ``best``, ``status``, the plots and ``--resume``
read it (:meth:`SearchMeta.read`) and use its attributes, never a raw dict. Every field
is optional on read, so a folder written by an earlier mtlsearch (or a plain Tune
experiment, with no file at all) reads; a field of the wrong type is one
:class:`~mtlsearch.errors.UserError` naming the file, the field and what to do. Older
shapes are accepted where they existed: ``tasks`` as ``{task: weight}``; ``overrides``
as a mapping; no ``launch_dir`` (readers then fall back to the space file's grandparent,
as they did before it was recorded).

:class:`TrialContext` is what the driver hands every trial (the search's ``Space``, its
folder, the launch folder and the single-task baselines); it travels to the trial's
process pickled by Ray. :class:`LoopConfig` is what the trial (or ``mtlsearch train``)
hands each worker's training loop, with :class:`DDPGroup` for a multi-worker trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mtlsearch.errors import UserError
from mtlsearch.layout import META_FILE


class TaskMeta(BaseModel):
    """One task of the search: its loss weight and primary metric with its direction."""

    model_config = ConfigDict(extra="allow")

    weight: float = 1.0
    metric: str | None = None
    mode: str | None = None


class SearchRecord(BaseModel):
    """The search settings a reader needs (the ``search`` field)."""

    model_config = ConfigDict(extra="allow")

    algorithm: str | None = None
    metric: str | list[str] | None = None
    mode: str | list[str] | None = None
    num_samples: int | None = None
    seed: int | None = None
    seeds: list[int] | None = None
    scheduler: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    max_concurrent_trials: int | None = None
    num_trials: int | None = None
    adaptive_seeds: dict[str, Any] | None = None
    index_key: str | None = None
    optuna_storage: str | None = None
    sampler: str | None = None


class SearchMeta(BaseModel):
    """The metadata of one search folder (see the module contract)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    space_path: str | None = None
    launch_dir: str | None = None
    """The folder ``mtlsearch search`` ran in: relative paths of the space resolve there."""
    space: dict[str, Any] | None = None
    profile: str | None = None
    overrides: list[str] | dict[str, Any] | None = None
    ablated_keys: list[str] | None = None
    baseline: dict[str, Any] | str | None = None
    paper: str | None = None
    search: SearchRecord = SearchRecord()
    cli_sections: dict[str, Any] | None = None
    tracking: Any = None
    tasks: dict[str, TaskMeta] | None = None
    single_task_baselines: dict[str, Any] | None = None
    planned_trials: list[dict[str, Any]] | None = None
    static_config: dict[str, Any] | None = None
    checkpoints: dict[str, Any] | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _weights_only(cls, value: Any) -> Any:
        """Earlier folders stored ``{task: weight}``."""
        if isinstance(value, dict):
            return {k: {"weight": v} if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                    for k, v in value.items()}
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value in (".", "..")
                                  or any(c in value for c in "/\\\0")):
            raise ValueError(f"must be a plain folder name, got {value!r}")
        return value

    # -- derived views ---------------------------------------------------------

    @property
    def task_weights(self) -> dict[str, float]:
        return {t: m.weight for t, m in (self.tasks or {}).items()}

    @property
    def seeds(self) -> list[int]:
        return list(self.search.seeds or [])

    def launch_folder(self) -> Path | None:
        """Where relative paths of the search resolve: the recorded launch folder, else
        (folders written before it was recorded) the space file's grandparent."""
        if self.launch_dir:
            return Path(self.launch_dir)
        return Path(self.space_path).resolve().parent.parent if self.space_path else None

    # -- the file --------------------------------------------------------------

    def write(self, folder: Any) -> None:
        """Write the file into ``folder`` (a path, a URI or a :class:`mtlsearch.storage.Location`),
        atomically where the file system allows."""
        from mtlsearch.storage import parse

        (parse(folder) / META_FILE).write_text(json.dumps(self.model_dump(mode="json"), indent=2, default=str))

    @classmethod
    def read(cls, folder: Any) -> SearchMeta | None:
        """The metadata of ``folder`` (a ``Path`` or a ``Location``), None without the file."""
        path = folder / META_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            raw = None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: not a JSON object (corrupt search metadata?)")
        return cls.parse(raw, path)

    @classmethod
    def parse(cls, raw: dict[str, Any], path: Path | str = META_FILE) -> SearchMeta:
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UserError(
                f"{path}: field {where!r}: {first['msg']} (written by another mtlsearch version, or "
                "edited by hand: fix the field, or rerun the search into a new folder)"
            ) from None


class TrialContext(BaseModel):
    """What the driver hands every trial of a search."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    space: Any
    """The search's :class:`mtlsearch.space.Space`."""
    exp_dir: str
    """The search folder (a local path or a storage URI)."""
    cwd: str
    """The launch folder: the trial runs there, so relative paths mean what they meant."""
    baselines: dict[str, Any] = {}
    """Single-task baselines by the hash of their config."""
    planned: list[dict[str, Any]] | None = None
    """Grid and random searches: the planned rows (a trial takes row ``config[INDEX_KEY]``)."""
    mutable: list[str] = []
    """Keys a trial takes from Tune's config rather than its row (PBT perturbs them)."""


class DDPGroup(BaseModel):
    """A search trial's DDP group: rank 0 is the trial's process, the others peer actors
    (:mod:`mtlsearch.execution.peers`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    world: int
    rank: int = 0
    address: str
    """``host:port`` of rank 0's TCP store."""
    backend: str
    checkpoint: Any = None
    """Tune's checkpoint to resume from (rank 0 reads its own from Tune)."""


class LoopConfig(BaseModel):
    """What one worker's training loop receives (:func:`mtlsearch.train.train_loop_per_worker`).

    It crosses Ray Train's ``train_loop_config`` as a plain dict (:meth:`to_dict`); the loop
    reads it back with ``LoopConfig.model_validate``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: dict[str, Any]
    """``Config.to_dict()``; single-task baselines are in its ``eval.baselines``."""
    data_root: str
    """The dataset folder, absolute."""
    tensorboard_dir: str | None = None
    report_to: Literal["train", "tune"] = "train"
    """The :class:`mtlsearch.execution.session.Session` back end: a Ray Train worker or a Tune trial."""
    ddp: DDPGroup | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(exclude={"ddp"}), "ddp": self.ddp}


__all__ = ["DDPGroup", "LoopConfig", "SearchMeta", "SearchRecord", "TaskMeta", "TrialContext"]
