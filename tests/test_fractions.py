"""Data fractions: nested, seeded, by scene; the validation split never changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlsearch.config import load_config
from mtlsearch.data.fractions import fraction_subset
from mtlsearch.data.pipeline import build_datasets
from mtlsearch.errors import UserError
from tests.test_readers import make_nyud_tree

IDS = [f"s{s:02d}_f{f}" for s in range(20) for f in range(3)]
SCENES = {i: i.split("_")[0] for i in IDS}


def test_nested_by_scene() -> None:
    subsets = {f: fraction_subset(IDS, f, seed=4, scenes=SCENES) for f in (0.25, 0.5, 1.0)}
    assert len(subsets[0.25]) == 5 * 3 and len(subsets[0.5]) == 10 * 3 and subsets[1.0] == IDS
    assert set(subsets[0.25]) < set(subsets[0.5]) < set(subsets[1.0])
    # Whole scenes, in the original order.
    kept = {SCENES[i] for i in subsets[0.25]}
    assert subsets[0.25] == [i for i in IDS if SCENES[i] in kept]


def test_seed_changes_the_draw_and_is_reproducible() -> None:
    a = fraction_subset(IDS, 0.25, seed=0, scenes=SCENES)
    assert a == fraction_subset(IDS, 0.25, seed=0, scenes=SCENES)
    assert a != fraction_subset(IDS, 0.25, seed=1, scenes=SCENES)
    for seed in range(5):
        small = fraction_subset(IDS, 0.1, seed=seed, scenes=SCENES)
        assert set(small) <= set(fraction_subset(IDS, 0.3, seed=seed, scenes=SCENES))


def test_by_image_without_scenes_and_edge_cases() -> None:
    ids = [f"i{k}" for k in range(10)]
    half = fraction_subset(ids, 0.5, seed=2)
    assert len(half) == 5 and set(half) <= set(fraction_subset(ids, 0.8, seed=2))
    assert len(fraction_subset(ids, 0.01, seed=2)) == 1  # at least one image
    with pytest.raises(UserError, match="data.fraction"):
        fraction_subset(ids, 0.0)


def test_validation_split_unchanged(tmp_path: Path) -> None:
    make_nyud_tree(tmp_path, train=tuple(f"t{k}" for k in range(8)), val=("v0", "v1"), cameras=False)
    base = [f"data.root={tmp_path}", "data.layout=nyud", "data.num_workers=0"]
    full = build_datasets(load_config(None, base))
    quarter = build_datasets(load_config(None, [*base, "data.fraction=0.25"]))
    assert quarter[2].train_size == 2 and full[2].train_size == 8
    assert set(quarter[0].ids) < set(full[0].ids)
    assert quarter[1].ids == full[1].ids == ["v0", "v1"]
