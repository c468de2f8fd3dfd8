"""Published numbers, metric directions, and the mapping of paper rows onto our rows.

The numbers ship with the package (``mtlsearch/paper/tables.yaml``). Each shipped table
that a search can reproduce gets an explicit :data:`ROW_MAPPINGS` entry: paper row name
-> the config values (dotted keys) that select our row, plus the metric prefix to read
(Table 5 compares the heads, the regularizer's renders and their average within one
trial). Tables without a mapping are shown beside ours without row pairing.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from mtlsearch.errors import UserError
from mtlsearch.tasks import METRIC_PREFIXES, TASKS, Direction, metric_direction

UNVERIFIED = {"crossview_cvm"}
"""Papers whose numbers come from a secondary summary."""


def primary_metrics() -> dict[str, str]:
    """Primary metric key of every task, ``{"semseg": "semseg_miou", ...}`` (from mtlsearch.tasks)."""
    return {name: f"{name}_{spec.metric}" for name, spec in TASKS.items()}


def direction_of(key: str) -> Direction | None:
    """``"max"``/``"min"`` for a reported key (also ``final_``/``best_`` columns and
    ``render_``/``avg_``/``mv_`` prefixed keys); ``None`` when it is not a score.
    The directions themselves come from :func:`mtlsearch.tasks.metric_direction`."""
    d = metric_direction(key)
    if d is None:
        for prefix in ("final_", "best_"):
            if key.startswith(prefix):
                d = metric_direction(key[len(prefix):])
                break
    return d


def arrow(key: str, style: str = "unicode") -> str:
    """The direction arrow of ``key``: ``↑``/``↓`` or LaTeX ``$\\uparrow$``/``$\\downarrow$``."""
    d = direction_of(key)
    if d is None:
        return ""
    if style == "latex":
        return "$\\uparrow$" if d == "max" else "$\\downarrow$"
    return "↑" if d == "max" else "↓"


# ---------------------------------------------------------------------------
# Published tables
# ---------------------------------------------------------------------------


@dataclass
class PaperRow:
    """How one published row maps onto our results."""

    select: dict[str, Any]
    """Config values (dotted keys) our row must have."""
    prefix: str = ""
    """Metric prefix to read in our results ("" heads, "render_", "avg_")."""


@dataclass
class PaperTable:
    ref: str
    """``"<paper>/<table>"``, e.g. ``"3dmtl/table6_render_tasks"``."""
    rows: dict[str, dict[str, float]]
    dataset: str | None = None
    mapping: dict[str, PaperRow] = field(default_factory=dict)
    verified: bool = True


_OFF = {"regularizer.enabled": False}
_REG = {"regularizer.enabled": True}

ROW_MAPPINGS: dict[str, dict[str, PaperRow]] = {
    "3dmtl/table3_cross_view": {
        "InvPT": PaperRow(dict(_OFF)),
        "3D reg": PaperRow({**_REG, "regularizer.cross_view.enabled": False}),
        "3D reg + cross-view": PaperRow({**_REG, "regularizer.cross_view.enabled": True}),
    },
    "3dmtl/table4_aux_heads": {
        "InvPT": PaperRow({**_OFF, "aux_heads.enabled": False}),
        "InvPT + aux heads": PaperRow({**_OFF, "aux_heads.enabled": True}),
        "InvPT + 3D reg": PaperRow({**_REG, "aux_heads.enabled": False}),
    },
    "3dmtl/table5_regularizer_outputs": {
        "task-specific heads": PaperRow(dict(_REG), ""),
        "regularizer": PaperRow(dict(_REG), "render_"),
        "average": PaperRow(dict(_REG), "avg_"),
    },
    "3dmtl/table6_render_tasks": {
        "semseg": PaperRow({"regularizer.tasks": ["semseg"]}),
        "depth": PaperRow({"regularizer.tasks": ["depth"]}),
        "normals": PaperRow({"regularizer.tasks": ["normals"]}),
        "edge": PaperRow({"regularizer.tasks": ["edge"]}),
        "all": PaperRow({"regularizer.tasks": "all"}),
    },
    "3dmtl/table7_data_fraction": {
        f"InvPT{reg} {pct}%": PaperRow(
            {"regularizer.enabled": bool(reg), "data.fraction": pct / 100}
        )
        for pct in (100, 50, 25)
        for reg in ("", " + 3D reg")
    },
    "crossview_cvm/nyuv2_multiview_train_single_view_test": {
        "DINOv3 no video": PaperRow({**_OFF, "cvm.enabled": False, "data.extra_frames": False}),
        "DINOv3 + video": PaperRow({**_OFF, "cvm.enabled": False, "data.extra_frames": True}),
        "3DMTL (re-implemented)": PaperRow({**_REG, "cvm.enabled": False}),
        "CvM": PaperRow({**_OFF, "cvm.enabled": True}),
    },
    "crossview_cvm/ablation_cost_volume_vs_features": {
        # "neither" is no cross-view module, trained with the video frames (= "+ video").
        # cvm_components.yaml varies use_features only with the cost volume on, so the
        # features-only row is told by the cost volume alone (its use_features is inactive).
        "neither": PaperRow({"cvm.enabled": False}),
        "cost volume only": PaperRow(
            {"cvm.enabled": True, "cvm.use_cost_volume": True, "cvm.use_features": False}
        ),
        "cross-view features only": PaperRow({"cvm.enabled": True, "cvm.use_cost_volume": False}),
        "full": PaperRow({"cvm.enabled": True, "cvm.use_cost_volume": True, "cvm.use_features": True}),
    },
    "crossview_cvm/ablation_depth_planes": {
        f"L={n}": PaperRow({"cvm.depth_planes": n}) for n in (128, 512)
    },
    "crossview_cvm/ablation_num_views": {
        f"V={n}": PaperRow({"cvm.num_views": n}) for n in (2, 3, 4)
    },
}
"""Paper row -> our config values, per shipped table. The 'all' row of Table 6 also
matches a list naming every task of the search (see :func:`values_equal`)."""


@lru_cache(maxsize=1)
def _load_all() -> dict[str, Any]:
    text = (resources.files("mtlsearch") / "paper" / "tables.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise RuntimeError("mtlsearch/paper/tables.yaml: expected a mapping")
    return data


def list_tables() -> list[str]:
    """Every shipped table reference, ``"<paper>/<table>"``."""
    return [f"{paper}/{table}" for paper, tables in _load_all().items() for table in tables]


def get_table(ref: str) -> PaperTable:
    """The published table ``ref`` (``"3dmtl/table6_render_tasks"``) with its row mapping.

    Raises :class:`UserError` naming ``ref`` and the known tables when it is unknown.
    """
    paper, _, table = ref.partition("/")
    data = _load_all()
    if paper not in data or table not in data[paper]:
        raise UserError(f"unknown paper table {ref!r} (known: {', '.join(list_tables())})")
    entry = data[paper][table]
    rows = {str(name): {k: float(v) for k, v in vals.items()} for name, vals in entry["rows"].items()}
    return PaperTable(
        ref=ref,
        rows=rows,
        dataset=entry.get("dataset"),
        mapping=ROW_MAPPINGS.get(ref, {}),
        verified=paper not in UNVERIFIED,
    )


# ---------------------------------------------------------------------------
# Value matching and ordering agreement
# ---------------------------------------------------------------------------


def readable(value: Any) -> str:
    """A config value as shown in tables and parquet: lists joined with ``+``."""
    if isinstance(value, (list, tuple)):
        return "+".join(readable(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={readable(v)}" for k, v in value.items())
    return str(value)


def values_equal(ours: Any, wanted: Any, all_tasks: list[str] | None = None) -> bool:
    """Whether a result's config value (readable string or raw) equals a mapping value.

    Numbers compare numerically ("0.5" == 0.5), booleans by name, lists by their
    ``+``-joined form; ``"all"`` equals the list of every task of the search.
    """
    if isinstance(wanted, bool):
        return str(ours).lower() == str(wanted).lower()
    if isinstance(wanted, (int, float)):
        try:
            return math.isclose(float(ours), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    ours_s, wanted_s = readable(ours), readable(wanted)
    if ours_s == wanted_s:
        return True
    if all_tasks:
        full = "+".join(all_tasks)
        return {ours_s, wanted_s} == {"all", full}
    return False


def ordering_agreement(ours: list[float], paper: list[float]) -> dict[str, float]:
    """Do two value lists rank the same items the same way?

    Returns ``pairs`` (pairs not tied in either list), ``agree`` (pairs ordered alike),
    ``fraction`` (agree / pairs, NaN without pairs) and Kendall's ``tau`` (tau-b, NaN
    with fewer than two items or all ties).
    """
    from scipy.stats import kendalltau

    pairs = agree = 0
    for i, j in itertools.combinations(range(len(ours)), 2):
        a = ours[i] - ours[j]
        b = paper[i] - paper[j]
        if a == 0 or b == 0 or math.isnan(a) or math.isnan(b):
            continue
        pairs += 1
        agree += (a > 0) == (b > 0)
    tau = float("nan")
    if len(ours) >= 2:
        res = kendalltau(ours, paper)
        tau = float(res.statistic)
    return {
        "pairs": float(pairs),
        "agree": float(agree),
        "fraction": agree / pairs if pairs else float("nan"),
        "tau": tau,
    }


__all__ = [
    "METRIC_PREFIXES",
    "ROW_MAPPINGS",
    "PaperRow",
    "PaperTable",
    "arrow",
    "direction_of",
    "get_table",
    "list_tables",
    "ordering_agreement",
    "primary_metrics",
    "readable",
    "values_equal",
]
