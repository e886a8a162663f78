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


class Cancelled(BackboneLensError):
    """A long computation was stopped by its caller (a ``cancel`` callable or event); work finished before
    the stop is kept where the computation caches it."""


class ImageDecodeError(BackboneLensError):
    """A file could not be decoded as an image; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
