"""Exception hierarchy of the package.

Everything the library raises on purpose derives from :class:`Image2StyleGANError`, so a CLI can catch that one
class, print its (one-line) message and exit non-zero, while genuine bugs still surface as tracebacks.
"""

from __future__ import annotations

__all__ = [
    "Image2StyleGANError",
    "InputError",
    "WeightsError",
    "WeightsFetchError",
    "WeightsFormatError",
    "WeightsNotFoundError",
]


class Image2StyleGANError(Exception):
    """Base class of every error this package raises deliberately."""


class InputError(Image2StyleGANError, ValueError):
    """Bad user input: wrong tensor shape or range, unknown layer or artifact name, inconsistent options.

    Also a :class:`ValueError`, so generic ``except ValueError`` handlers keep working.
    """


class WeightsError(Image2StyleGANError):
    """Base class of problems with the pretrained weight files."""


class WeightsNotFoundError(WeightsError):
    """A weight file is missing or does not match its registered sha256.

    The message is a single line that names the file and the command that fixes it.
    """


class WeightsFetchError(WeightsError):
    """Downloading or unpacking an artifact failed (pip error, checksum mismatch, unexpected archive layout)."""


class WeightsFormatError(WeightsError):
    """A weight file was readable but its content is not what the loader expects (keys, shapes, dtypes)."""
