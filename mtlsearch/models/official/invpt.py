"""The official InvPT checkpoint (prismformore/Multi-Task-Transformer, ``InvPT``:
``TransformerNet`` with its ``VisionTransformer``, ``TransformerDecoder`` and ``MLPHead``)
converted to the names of our ``invpt`` model (:mod:`mtlsearch.models.decoders.invpt`).

Any width, depth and task set: the widths are read from the tensors (ViT width C, patch,
MLP width; decoder D and E = the stage-1 width, stage widths E, E/2, E/4; each task's
output channels), then every tensor's shape is checked against them. The official keys
indexed by task position (query convs, up-embeddings, stage projections) follow the task
order: pass ``tasks`` when the dict's order is not the model's (a dict read back from
safetensors is sorted by name); by default the order in which ``heads.<task>`` first appear.
Build the target model with the same widths (``model.backbone_kwargs``,
``model.decoder_width`` = D, ``data.crop_size`` = the official input size, whose grid the
position embedding has) and load ``state_dict`` strictly.

Dropped (the official forward never reads them, or discards what they compute):
``invpt.redu_chan.0.*``, stage 1's ``attn.fuse_attn``, ``invpt.norm_mt`` and
``scale_embed.2`` (the block-18 skip).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import torch

from mtlsearch.errors import UserError
from mtlsearch.models.decoders.invpt import NUM_HEADS
from mtlsearch.models.official import Conversion

_BN = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_WB = r"(?P<p>weight|bias)"
_T = r"(?P<t>[^.]+)"

Shape = tuple[int, ...]
Dims = dict[str, int]


def _vec(n: str) -> Callable[[re.Match, Dims], Shape | None]:
    """A norm's parameters and statistics: (n,), or () for ``num_batches_tracked``."""
    return lambda m, d: () if m["p"] == "num_batches_tracked" else (_dim(n, m, d),)


def _wb(*weight: str) -> Callable[[re.Match, Dims], Shape | None]:
    """A layer with bias: weight of the given dims, bias (first dim,)."""

    def shape(m: re.Match, d: Dims) -> Shape:
        dims = tuple(_dim(w, m, d) for w in weight)
        return dims if m["p"] == "weight" else dims[:1]

    return shape


def _dim(name: str, m: re.Match, d: Dims) -> int:
    """A width by name: a number, ``W`` (the matched stage's width), ``W-`` (the previous
    stage's), ``n`` (the matched task's outputs), ``D+n``, ``TW`` (tasks x stage width)."""
    if name.isdigit():
        return int(name)
    stage = int(m["i"]) if "i" in m.re.groupindex else 0
    task = m["t"] if "t" in m.re.groupindex else None
    width = d["E"] >> stage
    return {
        "W": width,
        "W-": d["E"] >> max(stage - 1, 0),
        "4W": 4 * width,
        "TW": d["T"] * width,
        "n": d.get(f"n:{task}", -1),
        "D+n": d["D"] + d.get(f"n:{task}", -1),
        "E/2": d["E"] // 2,
        "E/4": d["E"] // 4,
        "3C": 3 * d["C"],
    }.get(name, d.get(name, -1))


_BB = "backbone.body.model."
_DEC = "decoder."
_ST = r"multi_task_decoder\.invpt\.invpt_stages\.(?P<i>[0-2])\."
# (official key pattern, our name (format fields: groups, tasks by {t}), expected shape);
# our name None: dropped.
RULES: list[tuple[str, str | None, Callable[[re.Match, Dims], Shape | None]]] = [
    (r"backbone\.cls_token", _BB + "cls_token", lambda m, d: (1, 1, d["C"])),
    (r"backbone\.pos_embed", _BB + "pos_embed", lambda m, d: None),  # (1, 1 + grid, C): checked below
    (r"backbone\.patch_embed\.proj\." + _WB, _BB + "patch_embed.proj.{p}", _wb("C", "3", "P", "P")),
    (r"backbone\.blocks\.(?P<b>\d+)\.(?P<n>norm1|norm2)\." + _WB, _BB + "blocks.{b}.{n}.{p}", _vec("C")),
    (r"backbone\.blocks\.(?P<b>\d+)\.attn\.qkv\." + _WB, _BB + "blocks.{b}.attn.qkv.{p}", _wb("3C", "C")),
    (r"backbone\.blocks\.(?P<b>\d+)\.attn\.proj\." + _WB, _BB + "blocks.{b}.attn.proj.{p}", _wb("C", "C")),
    (r"backbone\.blocks\.(?P<b>\d+)\.mlp\.fc1\." + _WB, _BB + "blocks.{b}.mlp.fc1.{p}", _wb("H", "C")),
    (r"backbone\.blocks\.(?P<b>\d+)\.mlp\.fc2\." + _WB, _BB + "blocks.{b}.mlp.fc2.{p}", _wb("C", "H")),
    (r"backbone\.norm\." + _WB, _BB + "norm.{p}", _vec("C")),
    (r"multi_task_decoder\.preliminary_decoder\." + _T + r"\.0\.conv\.weight",
     _DEC + "preliminary.{t}.0.0.weight", lambda m, d: (d["C"], d["C"], 3, 3)),
    (r"multi_task_decoder\.preliminary_decoder\." + _T + r"\.0\.bn1\." + _BN,
     _DEC + "preliminary.{t}.0.1.{p}", _vec("C")),
    (r"multi_task_decoder\.preliminary_decoder\." + _T + r"\.1\.conv\.weight",
     _DEC + "preliminary.{t}.1.0.weight", lambda m, d: (d["D"], d["C"], 3, 3)),
    (r"multi_task_decoder\.preliminary_decoder\." + _T + r"\.1\.bn1\." + _BN,
     _DEC + "preliminary.{t}.1.1.{p}", _vec("D")),
    (r"multi_task_decoder\.intermediate_head\." + _T + r"\." + _WB, _DEC + "inter_heads.{t}.{p}",
     _wb("n", "D", "1", "1")),
    (r"multi_task_decoder\.scale_embed\.0\." + _WB, _DEC + "encoder_proj.1.{p}",
     lambda m, d: (d["C"], d["E"] // 4, 3, 3) if m["p"] == "weight" else (d["E"] // 4,)),
    (r"multi_task_decoder\.scale_embed\.1\." + _WB, _DEC + "encoder_proj.0.{p}", _wb("E/2", "C", "3", "3")),
    (r"multi_task_decoder\.scale_embed\.2\." + _WB, None, _wb("E", "C", "3", "3")),
    (r"multi_task_decoder\.invpt\.mix_proj\." + _T + r"\.0\." + _WB, _DEC + "mix.{t}.{p}",
     _wb("E", "D+n", "1", "1")),
    (_ST + r"patch_embed\.(?P<j>\d+)\.proj\.(?P<k>[14])\.weight", _DEC + "stages.{i}.up.{j}.{k}.weight",
     lambda m, d: (_dim("W", m, d), _dim("W" if m["k"] == "4" else "W-", m, d), 3, 3)),
    (_ST + r"patch_embed\.(?P<j>\d+)\.proj\.(?P<k>[25])\." + _BN, _DEC + "stages.{i}.up.{j}.{k}.{p}", _vec("W")),
    (_ST + r"blocks\.0\.(?P<n>norm1|norm2)\." + _WB, _DEC + "stages.{i}.{n}.{p}", _vec("W")),
    (_ST + r"blocks\.0\.mlp\.fc1\." + _WB, _DEC + "stages.{i}.mlp.0.{p}", _wb("4W", "W")),
    (_ST + r"blocks\.0\.mlp\.fc2\." + _WB, _DEC + "stages.{i}.mlp.2.{p}", _wb("W", "4W")),
    (_ST + r"blocks\.0\.attn\.conv_proj_q\.(?P<j>\d+)\.conv\.weight", _DEC + "stages.{i}.attn.q_conv.{j}.0.weight",
     lambda m, d: (_dim("W", m, d), 1, 3, 3)),
    (_ST + r"blocks\.0\.attn\.conv_proj_q\.(?P<j>\d+)\.bn\." + _BN, _DEC + "stages.{i}.attn.q_conv.{j}.1.{p}",
     _vec("W")),
    (_ST + r"blocks\.0\.attn\.proj_(?P<n>[qkv])\." + _WB, _DEC + "stages.{i}.attn.{n}.{p}", _wb("W", "W")),
    (_ST + r"blocks\.0\.attn\.proj\." + _WB, _DEC + "stages.{i}.attn.proj.{p}", _wb("W", "W")),
    (_ST + r"blocks\.0\.attn\.fuse_attn\." + _WB, _DEC + "stages.{i}.attn.fuse.{p}",
     _wb(str(NUM_HEADS), str(2 * NUM_HEADS), "1", "1")),
    (r"multi_task_decoder\.invpt\.norm_mts\.(?P<i>[0-2])\." + _WB, _DEC + "stages.{i}.norm_out.{p}", _vec("TW")),
    (r"multi_task_decoder\.invpt\.redu_chan\.(?P<i>[0-2])\.(?P<j>\d+)\." + _WB, _DEC + "stages.{i}.to_out.{j}.{p}",
     _wb("E", "W", "1", "1")),
    (r"multi_task_decoder\.invpt\.norm_mt\." + _WB, None, _vec("E")),
    (r"multi_task_decoder\.invpt\.mt_proj\." + _T + r"\.0\." + _WB, _DEC + "final.{t}.0.{p}", _wb("E", "E", "3", "3")),
    (r"multi_task_decoder\.invpt\.mt_proj\." + _T + r"\.1\." + _BN, _DEC + "final.{t}.1.{p}", _vec("E")),
    (r"heads\." + _T + r"\.linear_pred\." + _WB, _DEC + "heads.{t}.{p}", _wb("n", "E", "1", "1")),
]
_COMPILED = [(re.compile(pattern), target, shape) for pattern, target, shape in RULES]


def _dropped(m: re.Match, target: str | None) -> bool:
    """Official weights the forward never reads (or whose result it discards)."""
    if target is None:
        return True
    stage = int(m["i"]) if "i" in m.re.groupindex else -1
    return stage == 0 and (".fuse." in target or ".to_out." in target)


def _majority(values: list[int], what: str) -> int:
    if not values:
        raise UserError(f"official InvPT state_dict: cannot read {what} (no tensor holds it)")
    return Counter(values).most_common(1)[0][0]


def _dims(official: dict[str, torch.Tensor], tasks: list[str]) -> Dims:
    """The widths, each read from every tensor that holds it (the most common value wins,
    so one mis-shaped tensor is reported as such rather than misreading a width)."""

    def read(pattern: str, axis: int) -> list[int]:
        rx = re.compile(pattern)
        return [int(v.shape[axis]) for k, v in official.items() if rx.fullmatch(k) and v.dim() > axis]

    d: Dims = {"T": len(tasks)}
    d["C"] = _majority(
        read(r"backbone\.(cls_token|pos_embed)", 2) + read(r"backbone\.(norm|blocks\.\d+\.norm[12])\.weight", 0),
        "the ViT width (backbone.cls_token)",
    )
    d["P"] = _majority(read(r"backbone\.patch_embed\.proj\.weight", 3), "the patch size (backbone.patch_embed)")
    d["H"] = _majority(read(r"backbone\.blocks\.\d+\.mlp\.fc1\.weight", 0), "the ViT MLP width")
    d["D"] = _majority(
        read(r"multi_task_decoder\.intermediate_head\.[^.]+\.weight", 1)
        + read(r"multi_task_decoder\.preliminary_decoder\.[^.]+\.1\.conv\.weight", 0),
        "the decoder width D (intermediate_head)",
    )
    d["E"] = _majority(
        read(r"heads\.[^.]+\.linear_pred\.weight", 1) + read(r"multi_task_decoder\.invpt\.mt_proj\.[^.]+\.0\.weight", 0),
        "the stage width E (heads.<task>.linear_pred)",
    )
    for t in tasks:
        name = re.escape(t)
        d[f"n:{t}"] = _majority(
            read(rf"heads\.{name}\.linear_pred\.(weight|bias)", 0)
            + read(rf"multi_task_decoder\.intermediate_head\.{name}\.(weight|bias)", 0),
            f"the outputs of task {t!r}",
        )
    return d


def _task_order(official: dict[str, torch.Tensor], tasks: Sequence[str] | None) -> list[str]:
    found = list(dict.fromkeys(m[1] for k in official if (m := re.fullmatch(r"heads\.([^.]+)\.linear_pred\.weight", k))))
    if not found:
        raise UserError("official InvPT state_dict: no heads.<task>.linear_pred.weight (is it an InvPT checkpoint?)")
    if tasks is None:
        return found
    if sorted(tasks) != sorted(found):
        raise UserError(f"official InvPT state_dict: its tasks are {sorted(found)}, not {list(tasks)}")
    return list(tasks)


def convert(official: dict[str, torch.Tensor], tasks: Sequence[str] | None = None) -> Conversion:
    """Our ``MultiTaskModel`` state_dict from the official InvPT ``state_dict`` (see the
    module docstring); ``tasks``: the official task order (default: the dict's)."""
    order = _task_order(official, tasks)
    dims = _dims(official, order)
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    wrong: list[str] = []
    for key, value in official.items():
        hit = next(((rx.fullmatch(key), target, shape) for rx, target, shape in _COMPILED if rx.fullmatch(key)), None)
        if hit is None:
            unknown.append(key)
            continue
        m, target, shape = hit
        groups = m.groupdict()
        if "t" in groups and groups["t"] not in order:
            unknown.append(key)
            continue
        if "j" in groups and int(groups["j"]) >= len(order):
            unknown.append(key)
            continue
        expected = shape(m, dims)
        got = tuple(value.shape)
        if key == "backbone.pos_embed":
            expected = got if len(got) == 3 and got[0] == 1 and got[2] == dims["C"] else (1, -1, dims["C"])
        if expected != got:
            wrong.append(f"{key} {got} (expected {expected})")
            continue
        if _dropped(m, target):
            dropped.append(key)
            continue
        state[target.format(**groups)] = value
    if unknown:
        raise UserError(
            f"official InvPT state_dict: {len(unknown)} unknown keys: {', '.join(unknown[:5])}"
            + (", ..." if len(unknown) > 5 else "")
        )
    if wrong:
        widths = ", ".join(f"{k}={v}" for k, v in dims.items() if ":" not in k)
        raise UserError(
            f"official InvPT state_dict: {len(wrong)} tensors of impossible shape ({widths}): "
            + "; ".join(wrong[:5])
            + ("; ..." if len(wrong) > 5 else "")
        )
    return Conversion(state, dropped)


__all__ = ["RULES", "convert"]
