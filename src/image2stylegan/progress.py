"""Per-step callbacks for :func:`image2stylegan.embed.embed`: a tqdm progress bar, and a fan-out helper."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        if info.step == info.steps:
            self.close()  # so a line printed at the end of the stage does not collide with the bar

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fan_out(callbacks: Sequence[Callable[[StepInfo], None] | None]) -> Callable[[StepInfo], None]:
    """One callback that calls each of ``callbacks`` (``None`` entries skipped) in order."""
    active = [c for c in callbacks if c is not None]

    def call(info: StepInfo) -> None:
        for callback in active:
            callback(info)

    return call


class FolderProgress:
    """Two bars for a folder run: images done / total with ETA (position 0) above the current batch's step bar
    (position 1, cleared after each stage). Messages go through :meth:`write` so they print above the bars.
    ``disable`` (``--quiet``) hides both bars; messages still print."""

    def __init__(self, total: int, done: int = 0, *, disable: bool = False):
        self.disable = disable
        self._overall = tqdm(total=total, initial=done, desc="images", unit="img", position=0, leave=True,
                             disable=disable, dynamic_ncols=True)
        self.steps = TqdmProgress(disable=disable, position=1, leave=False)

    def __call__(self, info: StepInfo) -> None:
        self.steps(info)

    def advance(self, n: int = 1) -> None:
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
