"""Error types.  Every user-facing failure is a ``UdicError`` with a one-line message.

The CLI prints ``udic: <file>: <message>`` for these and exits non-zero; anything
else escaping is a bug.
"""

from __future__ import annotations


class UdicError(Exception):
    """A failure the user can act on; ``str(err)`` is one line naming the problem."""

    exit_code = 1


class InputError(UdicError):
    """The input file is missing, unreadable, not an image, or not a valid .udic file."""


class ContainerError(InputError):
    """A .udic file is truncated, damaged or of an unsupported version."""


class ModelError(UdicError):
    """Model weights are missing, fail their hash check, or cannot be fetched."""


class OutputError(UdicError):
    """The output cannot be written (exists without --force, no permission, disk full)."""


class UsageError(UdicError):
    """Options that contradict each other or are out of range."""

    exit_code = 2
