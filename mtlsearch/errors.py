"""User-facing errors: raised for bad input, printed as one line by the CLI."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad argument, key, file or value).

    The CLI prints ``error: <message>`` and exits with status 2, no traceback.
    The message must name the offending key, file or value.
    """


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss: the run stops as failed.

    The message names the iteration and the non-finite loss parts. Every DDP worker
    raises it at the same step (the check is all-reduced), so a run never hangs on it.
    """
