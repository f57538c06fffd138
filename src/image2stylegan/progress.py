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
