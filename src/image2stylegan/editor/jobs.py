"""The editor's job queue: one job runs at a time per device, the others wait with their position shown.

A job is a function ``work(callback) -> result`` that runs an application through the engine and passes
``callback`` to it; the queue's worker thread runs it off the request thread. The callback records each step (stage,
step, PSNR, seconds, time left) and every ``preview_every`` steps a small preview of the image the step rendered,
and it returns True once the job was asked to stop, so the engine ends the stage after the current step and the
job keeps the embedding reached so far (:class:`~image2stylegan.progress.StopControl`).

Pages watch a job with :meth:`Job.wait`, which blocks until the job changed (a condition variable, no polling
interval) and returns a :class:`Snapshot`.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..embed import StepInfo
from ..errors import InputError
from ..progress import StopControl

__all__ = ["Job", "JobQueue", "Snapshot", "preview_array"]

QUEUED, RUNNING, DONE, STOPPED, FAILED, CANCELLED = "queued", "running", "done", "stopped", "failed", "cancelled"
FINAL = (DONE, STOPPED, FAILED, CANCELLED)


def preview_array(image: torch.Tensor, size: int) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> uint8 [size, size, 3] (area-averaged: a 1024 px render becomes a clean thumbnail)."""
    x = image[:1].detach().float().clamp(-1, 1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear",
                          align_corners=None if x.shape[-1] > size else False)
    return ((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


@dataclass(frozen=True)
class Snapshot:
    """A job as a page shows it."""

    state: str  # queued, running, done, stopped, failed, cancelled
    position: int  # 0 while running or finished, 1 = next to run, ...
    stage: str | None
    step: int  # steps done over the whole recipe
    total: int  # the recipe's whole budget (0 until known)
    psnr: float | None
    seconds: float  # since the job started running
    seconds_left: float | None  # at the pace so far
    preview: np.ndarray | None  # uint8 [H, W, 3]
    previews: int  # how many previews arrived so far
    message: str  # the error (failed), the stop reason (stopped), or ''
    version: int  # increases with every change
    reached: tuple[str, ...] = ()  # "w_plus at step 57/100", one per stage that ended at its stopping target

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    def line(self) -> str:
        """One line for the page: state, step, PSNR, time left."""
        if self.state == QUEUED:
            return f"queued: position {self.position}"
        if self.state == FAILED:
            return f"failed: {self.message}"
        if self.state == CANCELLED:
            return "cancelled before it started"
        parts = [self.state]
        if self.total:
            parts.append(f"step {self.step}/{self.total}" + (f" ({self.stage})" if self.stage else ""))
        if self.psnr is not None:
            parts.append(f"PSNR {self.psnr:.2f} dB")
        if self.reached:
            parts.append("reached the target: " + ", ".join(self.reached))
        parts.append(f"{self.seconds:.0f} s")
        if self.state == RUNNING and self.seconds_left is not None:
            parts.append(f"about {self.seconds_left:.0f} s left")
        if self.state == STOPPED and self.message:
            parts.append(self.message)
        return ", ".join(parts)


class Job:
    """One queued run. Create through :meth:`JobQueue.submit`."""

    def __init__(self, queue: JobQueue, number: int, label: str, work: Callable[[Callable], Any], total: int,
                 preview_every: int, preview_size: int):
        self.number, self.label, self.total = number, label, total
        self._queue, self._work = queue, work
        self._preview_every, self._preview_size = preview_every, preview_size
        self._cond = threading.Condition()
        self.control = StopControl()
        self.state, self.result, self.message = QUEUED, None, ""
        self._step, self._stage, self._psnr, self._preview, self._previews = 0, None, None, None, 0
        self._reached: list[tuple[str, int, int]] = []  # (stage, step, steps) of each stage that ended at its target
        self._started: float | None = None
        self._ended: float | None = None
        self._version = 0

    # -- called by the page ---------------------------------------------------------------------------------
    def stop(self, reason: str = "stopped by the user") -> None:
        """Stop a running job after its current step (it keeps what it reached) or drop a queued one."""
        self.control.request(reason)
        if self._queue._cancel(self):
            self._set(state=CANCELLED, message=reason)
        self._queue._touch_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return self._snapshot()

    def wait(self, after: int = -1, timeout: float | None = None) -> Snapshot:
        """The job once its version exceeds ``after`` (or the queue moved), or as it is after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > after, timeout=timeout)
            return self._snapshot()

    # -- called by the worker -------------------------------------------------------------------------------
    def _run(self) -> None:
        self._set(state=RUNNING, started=time.perf_counter())
        try:
            result = self._work(self._callback)
        except InputError as exc:
            self._set(state=FAILED, message=str(exc), ended=time.perf_counter())
        except Exception as exc:  # noqa: BLE001 - a job's failure is shown in its page, the server goes on
            traceback.print_exc()
            self._set(state=FAILED, message=f"{type(exc).__name__}: {exc}", ended=time.perf_counter())
        else:
            stopped = self.control.requested
            self._set(result=result, state=STOPPED if stopped else DONE,
                      message=(self.control.reason or "") if stopped else "", ended=time.perf_counter())

    def _callback(self, info: StepInfo) -> bool:
        preview = None
        if info.image is not None and (info.step % self._preview_every == 0 or info.step in (1, info.steps)):
            preview = preview_array(info.image, self._preview_size)
        with self._cond:
            self._step += 1
            self._stage, self._psnr = info.stage, info.psnr
            if info.target_reached:
                self._reached.append((info.stage, info.step, info.steps))
            if preview is not None:
                self._preview, self._previews = preview, self._previews + 1
            self._bump()
        return self.control(info)

    def _set(self, **values: Any) -> None:
        with self._cond:
            for key, value in values.items():
                setattr(self, f"_{key}" if key in ("started", "ended") else key, value)
            self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def _snapshot(self) -> Snapshot:
        now = self._ended or time.perf_counter()
        seconds = now - self._started if self._started is not None else 0.0
        left = None
        if self.state == RUNNING and self._step and self.total:
            skipped = sum(steps - step for _, step, steps in self._reached)  # budgeted steps that will not run
            left = seconds / self._step * max(self.total - skipped - self._step, 0)
        return Snapshot(self.state, self._queue.position(self), self._stage, self._step, self.total, self._psnr,
                        seconds, left, self._preview, self._previews, self.message, self._version,
                        tuple(f"{stage} at step {step}/{steps}" for stage, step, steps in self._reached))


class JobQueue:
    """Runs submitted jobs one at a time, in order, on a worker thread (one queue per device)."""

    def __init__(self, *, preview_every: int = 5, preview_size: int = 256):
        self.preview_every, self.preview_size = preview_every, preview_size
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._lock = threading.Condition()
        self._numbers = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="i2s-editor-jobs", daemon=True)
        self._thread.start()

    def submit(self, label: str, work: Callable[[Callable], Any], total: int = 0) -> Job:
        """Queue ``work(callback)``; ``total`` is its whole step budget (for the progress and time left)."""
        job = Job(self, next(self._numbers), label, work, total, self.preview_every, self.preview_size)
        with self._lock:
            if self._closed:
                raise RuntimeError("the job queue is closed")
            self._waiting.append(job)
            self._lock.notify_all()
        self._touch_all()
        return job

    def position(self, job: Job) -> int:
        with self._lock:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return 0

    def close(self) -> None:
        """Stop the running job, cancel the waiting ones and end the worker."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            running = self._running
            self._lock.notify_all()
        for job in waiting:
            job._set(state=CANCELLED, message="the server is shutting down")
        if running is not None:
            running.control.request("the server is shutting down")
        self._thread.join(timeout=60)

    def _cancel(self, job: Job) -> bool:
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                return True
            return False

    def _touch_all(self) -> None:
        # Positions changed: wake every page that waits on a queued job.
        with self._lock:
            jobs = list(self._waiting)
        for job in jobs:
            with job._cond:
                job._bump()

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._waiting or self._closed)
                if self._closed:
                    return
                job = self._running = self._waiting.popleft()
            self._touch_all()
            job._run()
            with self._lock:
                self._running = None
