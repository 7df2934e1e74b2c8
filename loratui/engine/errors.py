"""Errors a user can meet: each carries one clear line and, where there is one, the fix."""

from __future__ import annotations


class LoratuiError(Exception):
    """A problem the user can fix. ``str()`` is the one line shown to them."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(LoratuiError):
    """A config value (from a file or a flag) is missing or not allowed."""


class DatasetError(LoratuiError):
    """The dataset folder cannot be trained on as it is."""


class ModelError(LoratuiError):
    """The base model cannot be found or loaded."""


class RunError(LoratuiError):
    """A run directory is missing, busy or not resumable."""


class DiskFullError(RunError):
    """The disk the run writes to is full or read-only: resumable once there is room."""
