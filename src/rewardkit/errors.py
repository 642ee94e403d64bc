"""User-facing errors.

Every error a user can fix by changing their input derives from :class:`RewardkitError`;
the CLI prints its message on one line and exits with code 2. Anything else is a bug.
"""

from __future__ import annotations


class RewardkitError(Exception):
    """An error caused by the user's input; the message says what and where, and how to fix it."""

    exit_code = 2


class DataError(RewardkitError):
    """A data file or record is unreadable or does not match its format.

    The message names the file, the line (or record index) and the field.
    """


class StoreError(RewardkitError):
    """The repository is missing, or an operation on it was refused."""


class RefError(StoreError):
    """A ref (branch, ``branch~N``, commit-id prefix) does not resolve to exactly one commit."""


class RefMovedError(StoreError):
    """A ref moved between the caller's read and its compare-and-swap (another process wrote it)."""


class ModelError(RewardkitError):
    """A backbone or model folder is missing or cannot be loaded."""


class ConfigError(RewardkitError):
    """A setting (a training hyperparameter, a token budget) is outside its range; the message names it."""


class OutputError(RewardkitError):
    """An output (run folder, plot file) cannot be written where asked; the message names it and why."""
