"""Exceptions whose message is shown to the user as one line (no traceback unless ``-v``)."""

from __future__ import annotations


class BrainAgeError(Exception):
    """Base class for errors reported to the user as a single clear line."""

    exit_code = 1


class UsageError(BrainAgeError):
    """Bad command-line arguments or an unusable dataset (exit code 2)."""

    exit_code = 2


class InputError(BrainAgeError):
    """An input file is unreadable or invalid; the message names the file and the reason."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelBundleError(BrainAgeError):
    """A model bundle is missing, corrupted or does not match the data."""
