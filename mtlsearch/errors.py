"""User-facing errors: raised for bad input, printed as one line by the CLI."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad argument, key, file or value).

    The CLI prints ``error: <message>`` and exits with status 2, no traceback.
    The message must name the offending key, file or value.
    """
