"""Fuzz test: several hundred seeded bad inputs through ``mtlsearch.cli.main``, in-process.

Each case must end in a clean error (non-zero exit, an ``error:`` line, or ``data check``'s
list of problems), within the time limit, without changing or removing any file that
existed before it ran, and without reaching data generation, Ray or a search start
(guarded). Counts are printed (``pytest -s`` shows them); every failure is listed.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fuzz_cases import (
    GUARDS,
    build_fixtures,
    generate_cases,
    make_guard,
    run_case,
    snapshot,
    verdict,
)

SEED = 0
CPU_BUDGET_S = 120.0
"""CPU seconds of this process for all cases (about 30 on an idle 2-core machine)."""
WALL_BUDGET_S = 300.0
"""Wall-clock bound, generous: the machine may be shared by parallel test runs."""


def test_generator_is_seeded_and_large() -> None:
    a = [(c.category, c.name) for c in generate_cases(SEED)]
    assert a == [(c.category, c.name) for c in generate_cases(SEED)]
    bad = [c for c in generate_cases(SEED) if c.expect in ("error", "any")]
    assert len(bad) >= 300
    assert len({c.category for c in bad}) >= 10


def test_fuzz_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("ray")
    for module, attr in GUARDS:
        target = importlib.import_module(module)
        monkeypatch.setattr(target, attr, make_guard(module, attr, getattr(target, attr)))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    fx = build_fixtures(tmp_path / "fixtures")
    fixtures_before = snapshot(fx.root)
    cases = generate_cases(SEED)
    start = time.perf_counter()
    cpu_start = time.process_time()
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    failures: list[str] = []
    slowest: list[tuple[float, str]] = []
    for i, case in enumerate(cases):
        t0 = time.perf_counter()
        outcome = run_case(case, tmp_path / "cases" / f"{i:04d}", fx)
        slowest.append((time.perf_counter() - t0, f"{case.category}: {case.name}"))
        seconds[case.category] += slowest[-1][0]
        counts[case.category] += 1
        kinds[outcome.kind] += 1
        why = verdict(case, outcome)
        if why is not None:
            failures.append(f"[{case.category}] {case.name}: {why}"[:600])
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    if snapshot(fx.root) != fixtures_before:
        failures.append("the shared fixtures changed")
    slowest.sort(reverse=True)
    with capsys.disabled():
        print(f"\nfuzz: {len(cases)} cases in {elapsed:.1f} s ({cpu:.1f} s CPU), seed {SEED}")
        print("  by category (cases, seconds): " + ", ".join(
            f"{k} {v} ({seconds[k]:.0f} s)" for k, v in sorted(counts.items())))
        print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
        print(f"  clean errors: {kinds['clean']}; failures: {len(failures)}")
        print("  slowest: " + "; ".join(f"{name} {t:.1f} s" for t, name in slowest[:5]))
        for line in failures:
            print("  FAIL " + line.replace("\n", " | "))
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the contract (listed above)"
    assert cpu < CPU_BUDGET_S and elapsed < WALL_BUDGET_S
