"""The distributions a key of a search space can vary by: one class per distribution.

Contract: every class in :data:`DISTRIBUTIONS` (``grid``, ``choice``, ``uniform``,
``loguniform``, ``randint``, ``quniform``) is built by :meth:`Distribution.parse` from the
YAML arguments (raising :class:`SpecError` with a one-line reason on bad arguments) and
knows, in one place each:

* :meth:`~Distribution.sample` - one value drawn with a numpy ``Generator`` (like Tune's
  domain of the same name would draw it), for random-search expansion;
* :meth:`~Distribution.to_tune` - the Tune domain;
* :meth:`~Distribution.suggest` - the Optuna define-by-run suggestion;
* :meth:`~Distribution.candidates` - values that stand for it in validation;
* :meth:`~Distribution.describe` - its text for ``--dry-run``.

Numbers are finite; ``randint`` bounds fit in int64; grid values are never null.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any, ClassVar

import numpy as np

from mtlsearch.space.text import format_value

INT64_MAX = 2**63 - 1


class SpecError(ValueError):
    """Bad arguments of a distribution (the caller adds file, line and key)."""


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def label(value: Any) -> Any:
    """Optuna categoricals take only scalars: lists/mappings become their JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


class Distribution:
    """Base class: ``args`` as written in YAML, ``integer`` when the config key is an int."""

    name: ClassVar[str] = ""
    discrete: ClassVar[bool] = False

    def __init__(self, args: list[Any], integer: bool = False) -> None:
        self.args = args
        self.integer = integer

    @classmethod
    def parse(cls, args: Any, key: str, integer: bool) -> Distribution:
        """Check the YAML arguments for config key ``key``; raise :class:`SpecError`."""
        if not isinstance(args, list) or not args:
            raise SpecError(f"{cls.name}: expected a non-empty list, got {args!r}")
        cls.check(args, key, integer)
        return cls(args, integer)

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        """Distribution-specific argument rules."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"{self.name}({self.args!r})"

    def count(self) -> int | None:
        """Number of values a grid enumerates (None: continuous)."""
        return len(self.args) if self.discrete else None

    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def to_tune(self) -> Any:
        raise NotImplementedError

    def suggest(self, trial: Any, key: str) -> Any:
        raise NotImplementedError

    def candidates(self) -> list[Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name}({', '.join(format_value(v) for v in self.args)})"


class Grid(Distribution):
    """``grid: [a, b, c]``: every value, as a grid axis (Tune ``grid_search``)."""

    name = "grid"
    discrete = True

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        seen: list[str] = []
        for value in args:
            if value is None:
                raise SpecError(
                    f"{cls.name}: null is not a value (leave the key out of the space to keep its default)"
                )
            text = json.dumps(value, sort_keys=True, default=str)
            if text in seen:
                raise SpecError(f"{cls.name}: value {value!r} is listed twice")
            seen.append(text)

    def sample(self, rng: np.random.Generator) -> Any:
        return copy.deepcopy(self.args[int(rng.integers(len(self.args)))])

    def to_tune(self) -> Any:
        from ray import tune

        return tune.choice(self.args)

    def suggest(self, trial: Any, key: str) -> Any:
        labels = [label(v) for v in self.args]
        picked = trial.suggest_categorical(key, labels)
        return copy.deepcopy(self.args[labels.index(picked)])

    def candidates(self) -> list[Any]:
        return list(self.args)

    def describe(self) -> str:
        return f"{self.name} [{', '.join(format_value(v) for v in self.args)}]"


class Choice(Grid):
    """``choice: [a, b]``: one value per trial, uniformly (a grid search enumerates it)."""

    name = "choice"


class _Bounded(Distribution):
    """``[low, high]`` with finite numbers and low < high."""

    def _bounds(self) -> tuple[Any, Any]:
        return self.args[0], self.args[1]

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        if len(args) != 2 or not all(_finite(a) for a in args) or not args[0] < args[1]:
            raise SpecError(f"{cls.name}: expected [low, high] with finite low < high, got {args!r}")

    def candidates(self) -> list[Any]:
        lo, hi = self._bounds()
        return [float(lo), float(hi), float((lo + hi) / 2)]


class Uniform(_Bounded):
    """``uniform: [low, high]``: a float in [low, high]."""

    name = "uniform"

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        super().check(args, key, integer)
        if integer:
            raise SpecError(f"{cls.name} samples floats but {key} is an integer; use randint or quniform")

    def sample(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(*self._bounds()))

    def to_tune(self) -> Any:
        from ray import tune

        return tune.uniform(*self.args)

    def suggest(self, trial: Any, key: str) -> Any:
        return trial.suggest_float(key, *self._bounds())


class LogUniform(Uniform):
    """``loguniform: [low, high]``, low > 0: a float, uniform in log space."""

    name = "loguniform"

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        super().check(args, key, integer)
        if args[0] <= 0:
            raise SpecError(f"{cls.name}: bounds must be positive, got {args!r}")

    def sample(self, rng: np.random.Generator) -> Any:
        lo, hi = self._bounds()
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    def to_tune(self) -> Any:
        from ray import tune

        return tune.loguniform(*self.args)

    def suggest(self, trial: Any, key: str) -> Any:
        return trial.suggest_float(key, *self._bounds(), log=True)


class RandInt(_Bounded):
    """``randint: [low, high]`` integers: an integer in [low, high) (as in Tune)."""

    name = "randint"

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        super().check(args, key, integer)
        if not all(isinstance(a, int) for a in args):
            raise SpecError(f"{cls.name}: bounds must be integers, got {args!r}")
        if not all(-INT64_MAX - 1 <= a <= INT64_MAX for a in args):
            raise SpecError(f"{cls.name}: bounds must lie in [-2^63, 2^63), got {args!r}")

    def sample(self, rng: np.random.Generator) -> Any:
        return int(rng.integers(*self._bounds()))

    def to_tune(self) -> Any:
        from ray import tune

        return tune.randint(*self.args)

    def suggest(self, trial: Any, key: str) -> Any:
        lo, hi = self._bounds()
        return trial.suggest_int(key, lo, hi - 1)

    def candidates(self) -> list[Any]:
        lo, hi = self._bounds()
        return [lo, hi - 1]


class QUniform(Distribution):
    """``quniform: [low, high, q]``: low..high rounded to a multiple of q (ints for int keys)."""

    name = "quniform"

    @classmethod
    def check(cls, args: list[Any], key: str, integer: bool) -> None:
        if len(args) != 3 or not all(_finite(a) for a in args) or not args[0] < args[1] or args[2] <= 0:
            raise SpecError(f"{cls.name}: expected [low, high, q] with finite low < high, q > 0, got {args!r}")
        if integer and not all(isinstance(a, int) for a in args):
            raise SpecError(f"{cls.name}: {key} is an integer; low, high and q must be integers")
        if integer and not all(abs(a) <= INT64_MAX for a in args):
            raise SpecError(f"{cls.name}: bounds must lie in [-2^63, 2^63), got {args!r}")

    def sample(self, rng: np.random.Generator) -> Any:
        lo, hi, q = self.args
        value = float(np.round(rng.uniform(lo, hi) / q) * q)
        return int(round(value)) if self.integer else value

    def to_tune(self) -> Any:
        from ray import tune

        return tune.qrandint(*self.args) if self.integer else tune.quniform(*self.args)

    def suggest(self, trial: Any, key: str) -> Any:
        lo, hi, q = self.args
        if self.integer:
            return trial.suggest_int(key, lo, hi, step=q)
        return trial.suggest_float(key, lo, hi, step=q)

    def candidates(self) -> list[Any]:
        lo, hi = self.args[0], self.args[1]
        return [lo, hi] if self.integer else [float(lo), float(hi)]


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    cls.name: cls for cls in (Grid, Choice, Uniform, LogUniform, RandInt, QUniform)
}
"""Every distribution by its YAML name."""


__all__ = [
    "DISTRIBUTIONS",
    "Choice",
    "Distribution",
    "Grid",
    "LogUniform",
    "QUniform",
    "RandInt",
    "SpecError",
    "Uniform",
    "label",
]
