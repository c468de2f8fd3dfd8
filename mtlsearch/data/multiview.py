"""Multi-view samples: a reference view plus its nearest views of the same scene.

Neighbours are the other views of the reference's scene (within the same split, plus
the split's extra frames with ``data.extra_frames``: video frames such as NYUv2's raw
frames, labelled for depth only), ordered by camera-centre distance (ties: by name).
When a scene has fewer views than needed the list cycles; a view alone in its scene
gets the reference view itself as its source, with the identity relative pose. A
dataset without cameras is refused for anything multi-view unless the user asks for
that duplication (``data.single_view_duplication``; see
:func:`mtlsearch.data.pipeline.check_cameras`).

Source views may carry fewer labels than the reference (``data.source_tasks``; extra
frames have only the labels whose files exist): the other tasks are filled with their
ignore value and flagged ``has[task] = False``, so every loss skips them.

Batch level: :func:`as_reference` makes view k the reference of a collated batch
(poses recomputed), :func:`every_view_as_reference` stacks all V turns along the batch
(``data.supervise_all_views``: every view that has a label trains the heads).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from mtlsearch.data.reader import Camera, empty_label
from mtlsearch.tasks import get_task


class ViewGraph:
    """Nearest same-scene views by camera-centre distance."""

    def __init__(self, ids: list[str], cameras: dict[str, Camera] | None) -> None:
        self.ids = list(ids)
        self._order: dict[str, list[str]] = {}
        if cameras is None:
            return
        by_scene: dict[str, list[str]] = {}
        for id_ in self.ids:
            by_scene.setdefault(cameras[id_].scene, []).append(id_)
        for members in by_scene.values():
            members = sorted(members)
            centres = np.stack([cameras[m].cam2world[:3, 3] for m in members])
            dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
            for i, m in enumerate(members):
                order = sorted((j for j in range(len(members)) if j != i), key=lambda j: (dist[i, j], members[j]))
                self._order[m] = [members[j] for j in order]

    @property
    def has_cameras(self) -> bool:
        return bool(self._order)

    def alone(self, ids: list[str]) -> list[str]:
        """The ``ids`` that have no other view in their scene (their source is themselves)."""
        return [i for i in ids if not self._order.get(i)]

    def neighbours(self, id_: str, k: int) -> list[str]:
        """The ``k`` nearest other views of ``id_``'s scene (cycling when the scene has
        fewer); ``id_`` itself repeated when it has no other view or no camera."""
        others = self._order.get(id_, [])
        if k <= 0:
            return []
        if not others:
            return [id_] * k
        return [others[i % len(others)] for i in range(k)]


def fill_missing(view: dict[str, Any], tasks: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Add ignore-filled labels (``has = False``) for ``tasks`` absent from a decoded view."""
    size = view["image"].shape[:2]
    for task in tasks:
        if task not in view["labels"]:
            view["labels"][task] = empty_label(task, size)
            view["has"][task] = False
    return view


def source_copy(view: dict[str, Any], keep: set[str] | None) -> dict[str, Any]:
    """A transformed reference view reused as its own source view (no cameras, or alone
    in its scene): same pixels, identity pose, labels outside ``keep`` ignored."""
    out = copy.copy(view)
    out["labels"] = dict(view["labels"])
    out["has"] = dict(view["has"])
    if keep is not None:
        for task, label in view["labels"].items():
            if task not in keep:
                out["labels"][task] = torch.full_like(label, get_task(task).ignore)
                out["has"][task] = torch.tensor(False)
    out["rel_pose"] = torch.eye(4)
    return out


def set_rel_poses(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rel_pose of each view = inv(cam2world_src) @ cam2world_ref (identity for view 0)."""
    ref = views[0]["cam2world"].double()
    views[0]["rel_pose"] = torch.eye(4)
    for view in views[1:]:
        rel = torch.linalg.inv(view["cam2world"].double()) @ ref
        view["rel_pose"] = rel.float()
    return views


def as_reference(views: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """A collated batch of views with view ``k`` first and the others after it in their
    order; every ``rel_pose`` recomputed as inv(cam2world_j) @ cam2world_k."""
    order = [k] + [i for i in range(len(views)) if i != k]
    out = [_shallow_view(views[i]) for i in order]
    ref = out[0]["cam2world"].double()
    like = out[0]["rel_pose"]
    out[0]["rel_pose"] = torch.eye(4, dtype=like.dtype, device=like.device).expand_as(like).clone()
    for view in out[1:]:
        rel = torch.linalg.inv(view["cam2world"].double()) @ ref
        view["rel_pose"] = rel.to(view["rel_pose"].dtype)
    return out


def every_view_as_reference(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All V turns of :func:`as_reference` concatenated along the batch: position i holds
    (B * V) views, rows [k B, (k + 1) B) being the batch with view k as the reference.
    Rows [0, B) are the original batch."""
    turns = [as_reference(views, k) for k in range(len(views))]
    return [_concat([turn[i] for turn in turns]) for i in range(len(views))]


def _shallow_view(view: dict[str, Any]) -> dict[str, Any]:
    out = dict(view)
    for key in ("labels", "has"):
        if key in out:
            out[key] = dict(out[key])
    return out


def _concat(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(items, dim=0)
    if isinstance(first, dict):
        return {key: _concat([item[key] for item in items]) for key in first}
    if isinstance(first, (list, tuple)):
        return [x for item in items for x in item]
    return first
