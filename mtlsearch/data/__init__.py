"""Datasets: SynthRooms generation, NYUD_MT / PASCAL_MT readers, augmentation, multi-view samples."""

from typing import Any

_LAZY = {
    "build_datasets": "mtlsearch.data.pipeline",
    "build_loader": "mtlsearch.data.pipeline",
    "resolve_root": "mtlsearch.data.pipeline",
    "effective_num_views": "mtlsearch.data.pipeline",
    "DatasetInfo": "mtlsearch.data.pipeline",
    "MultiTaskDataset": "mtlsearch.data.pipeline",
    "make_reader": "mtlsearch.data.pipeline",
    "fraction_subset": "mtlsearch.data.fractions",
    "check_dataset": "mtlsearch.data.check",
}


def __getattr__(name: str) -> Any:
    """Lazy re-exports, so ``import mtlsearch.data`` stays light (no torch)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mtlsearch.data' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
