"""The one error type for bad user input."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input, with a one-line message naming file, line and field.

    The command line prints it as ``error: <message>`` and exits with status 2.
    """
