"""Per-step callbacks for :func:`image2stylegan.embed.embed`: a tqdm progress bar, a fan-out helper, and
:class:`StopControl`, which stops a run cleanly on request or on SIGINT / SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from tqdm.auto import tqdm

from .embed import StepInfo


class TqdmProgress:
    """One tqdm bar per stage showing the stage, step, loss and PSNR. Use as a context manager (closes the bar)."""

    def __init__(self, *, disable: bool = False, position: int = 0, leave: bool = True):
        self._bar: tqdm | None = None
        self._stage: str | None = None
        self.disable, self.position, self.leave = disable, position, leave

    def __call__(self, info: StepInfo) -> None:
        if info.stage != self._stage:
            self.close()
            self._stage = info.stage
            self._bar = tqdm(
                total=info.steps, desc=f"{info.stage:>6}", unit="step", disable=self.disable,
                position=self.position, leave=self.leave, dynamic_ncols=True,
            )
        self._bar.set_postfix(loss=f"{info.loss:.4g}", psnr=f"{info.psnr:.2f} dB", refresh=False)
        self._bar.update(1)
        if info.step == info.steps or info.target_reached:
            self.close()  # so a line printed at the end of the stage does not collide with the bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fan_out(callbacks: Sequence[Callable[[StepInfo], bool | None] | None]) -> Callable[[StepInfo], bool]:
    """One callback that calls each of ``callbacks`` (``None`` entries skipped) in order; it asks the engine to
    stop when any of them does."""
    active = [c for c in callbacks if c is not None]

    def call(info: StepInfo) -> bool:
        stop = False
        for callback in active:
            stop = bool(callback(info)) or stop
        return stop

    return call


class StopControl:
    """A step callback that stops a run once :meth:`request` was called (from any thread: a Stop button, a
    cluster driver) or, inside :meth:`on_signals`, once the process got SIGINT (Ctrl-C) or SIGTERM (what
    ``timeout``, schedulers and Ray send). The engine then ends the stage after the current step and returns the
    embedding reached so far, marked stopped.

    ``reason`` says why ("SIGINT", "SIGTERM", or the text given to :meth:`request`); ``where`` the stage and step
    the run had reached when the request arrived.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.where: str | None = None
        self._last: StepInfo | None = None

    def request(self, reason: str = "stop requested") -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def __call__(self, info: StepInfo) -> bool:
        if self.reason is not None and self.where is None:
            self.where = f"{info.stage} step {info.step}/{info.steps}"
        return self.reason is not None

    @contextmanager
    def on_signals(self) -> Iterator[StopControl]:
        """Turn the first SIGINT / SIGTERM into a stop request while the block runs; a second SIGINT aborts at
        once (KeyboardInterrupt). Outside the main thread, signals cannot be caught and nothing is installed."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handle(signum, frame) -> None:
            name = signal.Signals(signum).name
            if self.reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request(name)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class FolderProgress:
    """Two bars for a folder run: images done / total with ETA (position 0) above the current batch's step bar
    (position 1, cleared after each stage). Messages go through :meth:`write` so they print above the bars.
    ``disable`` (``--quiet``) hides both bars; messages still print."""

    def __init__(self, total: int, done: int = 0, *, disable: bool = False):
        self.disable = disable
        self.failed = 0
        self._overall = tqdm(total=total, initial=done, desc="images", unit="img", position=0, leave=True,
                             disable=disable, dynamic_ncols=True)
        self.steps = TqdmProgress(disable=disable, position=1, leave=False)

    def __call__(self, info: StepInfo) -> None:
        self.steps(info)

    def advance(self, n: int = 1, *, failed: bool = False) -> None:
        """``n`` more images done (``failed``: they are error rows, counted beside the bar)."""
        if failed:
            self.failed += n
            self._overall.set_postfix(failed=self.failed, refresh=False)
        self._overall.update(n)

    def write(self, message: str, *, err: bool = False) -> None:
        import sys

        tqdm.write(message, file=sys.stderr if err else sys.stdout)

    def close(self) -> None:
        self.steps.close()
        self._overall.close()

    def __enter__(self) -> FolderProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
