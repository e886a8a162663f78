"""Typed exceptions. Every message says what went wrong and how to fix it."""


class BackboneLensError(Exception):
    """Base class for all errors raised by Backbone Lens."""


class UnknownBackboneError(BackboneLensError, KeyError):
    """A backbone name that is not registered and not a valid online name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(BackboneLensError):
    """Pretrained weights cannot be obtained (no network, missing package or file)."""


class UnsupportedOperationError(BackboneLensError):
    """The backbone cannot do what was asked (e.g. attention maps from a CNN)."""


class ImageDecodeError(BackboneLensError):
    """A file could not be decoded as an image; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class Cancelled(BackboneLensError):
    """A long job (extraction, a projection fit, a report) was cancelled by its caller; what it had
    already written (e.g. the batches in the feature cache) is kept."""


class CacheError(BackboneLensError):
    """A cache file or folder cannot be used and cannot be healed here (a read-only folder, a
    database locked by another process past the timeout); the message says what to do."""


class DiskFullError(CacheError):
    """The disk (or the file-size limit) holding a file being written is full; what was being
    written is rolled back or removed, so the cache is as it was before."""
