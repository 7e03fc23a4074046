"""One exception family for everything a user can cause or fix.

Every error a user can trigger (bad media, no face, missing models, tampered weights) is an
:class:`FdinError` whose ``str()`` is a complete, plain sentence suitable for a CLI line or a UI
toast. Programming errors stay ordinary Python exceptions.
"""

from __future__ import annotations


class FdinError(Exception):
    """Base class: the message is meant for the person using fdin."""


# --- media -----------------------------------------------------------------------------------------
class MediaError(FdinError):
    """The input file could not be used as an image or video."""


class EmptyMediaError(MediaError):
    """The file is empty, or holds no decodable frame."""


class TruncatedMediaError(MediaError):
    """The file is cut short or corrupt."""


class UnsupportedMediaError(MediaError):
    """The format or container is not accepted (e.g. playlists, image pipes, unknown types)."""


class NoVideoStreamError(MediaError):
    """The container has no video stream (e.g. audio only)."""


class MediaLimitError(MediaError):
    """The input exceeds a size, resolution, duration or frame limit."""


# --- faces and models ------------------------------------------------------------------------------
class NoFaceError(FdinError):
    """No usable face was found in the input."""


class ModelUnavailableError(FdinError):
    """A model's files are not on disk (and fdin never downloads at run time)."""


class WeightsIntegrityError(FdinError):
    """A weights file does not match its recorded SHA-256, or is not in a safe format."""


class ProcessingTimeoutError(FdinError):
    """Processing did not finish within its deadline."""


class WorkerCrashedError(FdinError):
    """The isolated worker process died while processing the input."""


class ProcessingCancelledError(FdinError):
    """The request was cancelled (or its client went away) and its work was stopped."""
