"""Exception hierarchy of the package, and its notices.

Everything the library raises on purpose derives from :class:`Image2StyleGANError`, so a CLI can catch that one
class, print its (one-line) message and exit non-zero, while genuine bugs still surface as tracebacks.

Things the user should know that are not errors (a photo was centre-cropped or resized, a latent file lacks noise
maps, a mask was thresholded) are *notices*: :func:`notice` issues them as :class:`Notice` warnings, one line of
text each, instead of returning them. A program that uses the library sees them as Python shows any warning
(filter them as usual, e.g. ``warnings.simplefilter("ignore", Notice)``); :func:`notices_to` sends each one,
repeats included, to a function of your choice for a block of code, which is how ``i2s`` prints them as
``note: ...`` lines.

Where the filter lives: importing this module changes no warning filter (a library should not). Python's
default filter shows a given warning text once per place that issues it, so a program that wants every notice
(e.g. the same photo loaded twice) adds ``warnings.simplefilter("always", Notice)`` or uses :func:`notices_to`,
which installs that filter for its block. The ``i2s`` command line does so for every command.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "Image2StyleGANError",
    "InputError",
    "Notice",
    "WeightsError",
    "WeightsFetchError",
    "WeightsFormatError",
    "WeightsNotFoundError",
    "notice",
    "notices_to",
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


class Notice(UserWarning):
    """Something the user should know that is not an error: a change made to an input (crop, resize, EXIF
    orientation, transparency, thresholding), zero noise for maps a file lacks, a file made for another generator.
    The message is one line and names what it is about (usually a file). Issue one with :func:`notice`."""


def notice(message: str) -> None:
    """Issue ``message`` (one line) as a :class:`Notice` warning, attributed to the caller."""
    warnings.warn(message, Notice, stacklevel=2)


@contextmanager
def notices_to(handler: Callable[[str], None]) -> Iterator[None]:
    """Within the block, hand every :class:`Notice` to ``handler(message)`` instead of showing it as a warning;
    every one, repeats included (the block's filter for Notice is ``"always"``). Other warnings are shown as
    before. Filters and ``warnings.showwarning`` are restored on leaving; blocks nest (the innermost wins).
    Like :class:`warnings.catch_warnings`, this changes process-wide state: use it from one thread."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Notice)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, Notice):
                handler(str(message))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
