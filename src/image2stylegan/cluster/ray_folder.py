"""A folder run on Ray Data: the local run's chunks as rows, embedded by an actor pool, merged by the driver.

The driver plans the run exactly as a local one does (:mod:`..apps.batch_plan`: the sorted inputs, their output
names, the fixed chunks of ``--batch-size``) and leaves out the chunks whose images are all finished. Each remaining
chunk is one row of a Ray dataset; ``map_batches`` hands rows to a pool of :class:`ChunkWorker` actors. A worker opens
the generator, VGG and LPIPS once, then for each chunk calls the local engine (:func:`..apps.batch_run.run_folder`)
on it, which reads the photos, embeds them as one batch from the per-image seeded start, and writes each image's
folder into the shared ``--outdir`` (every file atomically, ``metrics.json`` last). It returns the chunk's rows of
``results.csv``; only the driver writes ``results.csv``, as each chunk comes back.

Why the bytes are a local run's: the chunks, the start of every image and the code are the same, and each worker
runs PyTorch with the thread count of :attr:`ClusterSpec.threads`, so on the same device and with the same number
of threads as the local run the arithmetic is the same (a float sum's order depends on the thread count, so
different counts may differ in the last bits).

Failures: a bad file is an error row (the local engine's). A worker process that dies is restarted by Ray and its
chunk retried; since a chunk's outputs are published whole or not at all and a chunk is recomputed whole, a retry
neither duplicates nor corrupts anything. A driver that is killed loses nothing finished: run the same command again
and it resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..apps.batch_plan import BatchItem, chunks
from ..apps.batch_results import ResultsTable
from ..apps.reconstruct import STAGE_NAMES, ReconstructionSettings
from ..errors import InputError

__all__ = ["ClusterSpec", "ChunkWorker", "ray_available", "run_folder_on_ray"]

INSTALL = "pip install 'image2stylegan[cluster]'"
RUN_LOG = "cluster-run.json"
"""What a Ray run measured (start-up, chunks, worker pids, seconds), written into --outdir beside results.csv."""


def ray_available() -> bool:
    try:
        import ray.data  # noqa: F401 - Ray Data is an extra of Ray: both must be there
    except ImportError:
        return False
    return True


def require_ray() -> None:
    if not ray_available():
        raise InputError(f"--engine ray needs Ray (with Ray Data): {INSTALL}")


@dataclass(frozen=True)
class ClusterSpec:
    """What every worker needs to embed its chunks exactly as the local run would (sent to each actor once)."""

    settings: ReconstructionSettings
    outdir: str
    network: str | None = None
    device: str = "auto"
    batch_size: int = 1
    align: bool = False
    face: int = 0
    paste_back: bool = False
    refuse_stale: bool = False
    threads: int = 1  # PyTorch threads per worker (and CPUs Ray reserves for it)
    gpus: float = 0.0  # GPUs Ray reserves per worker
    compile: bool = False  # --compile: each worker compiles its generator once, for all its chunks
    env: dict[str, str] = field(default_factory=dict)  # I2S_HOME and such, for workers on other nodes
    cwd: str | None = None  # the driver's working directory: relative photo and output paths mean the same there


class ChunkWorker:
    """A Ray Data actor: opens the models once, then embeds one chunk per row of the batches it is given."""

    def __init__(self, spec: ClusterSpec):
        import torch

        from ..apps.batch_run import FolderJob
        from ..runtime import open_generator, perceptual_and_lpips, resolve_device

        os.environ.update(spec.env)
        if spec.cwd is not None and Path(spec.cwd).is_dir():
            # Paths are recorded as the user wrote them (results.csv, metrics.json), as in a local run; on a node
            # without this folder only absolute paths on shared storage can be read (a missing photo: an error row).
            os.chdir(spec.cwd)
        torch.set_num_threads(spec.threads)
        self.spec = spec
        device = resolve_device("cuda" if spec.device == "auto" and spec.gpus > 0 else spec.device)
        generator, sha = open_generator(spec.network, device, compile=spec.compile)
        perceptual, lpips = perceptual_and_lpips(device)
        detector = None
        if spec.align:
            from ..align import load_mtcnn

            detector = load_mtcnn()
        self.job = FolderJob(generator, perceptual, lpips, spec.settings, sha, str(device),
                             batch_size=spec.batch_size, align=spec.align, face=spec.face,
                             paste_back=spec.paste_back, detector=detector, refuse_stale=spec.refuse_stale)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from ..apps.batch_run import run_folder

        out: dict[str, list] = {"chunk": [], "rows": [], "pid": [], "seconds": []}
        for encoded in batch["chunk"]:
            items = [BatchItem(i, Path(p), n) for i, p, n in json.loads(str(encoded))]
            started = time.perf_counter()
            table = ResultsTable(Path(self.spec.outdir), items, STAGE_NAMES, file=None)  # the driver writes it
            notes: list[str] = []
            run_folder(self.job, items, Path(self.spec.outdir), table, log=notes.append)
            # Rows still pending were finished before (run_folder skips them): the driver's table already has them.
            rows = {str(it.index): table.rows[it.index] for it in items if table.status(it) != "pending"}
            out["chunk"].append(str(encoded))
            out["rows"].append(json.dumps({"rows": rows, "notes": notes}))
            out["pid"].append(os.getpid())
            out["seconds"].append(time.perf_counter() - started)
        return out


def _encode(chunk: list[BatchItem]) -> str:
    return json.dumps([(it.index, str(it.path), it.name) for it in chunk])


def run_folder_on_ray(
    spec: ClusterSpec,
    items: list[BatchItem],
    table: ResultsTable,
    *,
    address: str | None = None,
    workers: int = 1,
    unfinished: Callable[[BatchItem], bool],
    on_chunk: Callable[[list[BatchItem], dict[int, dict], list[str]], None] | None = None,
    max_retries: int = 3,
) -> dict[str, Any]:
    """Embed every chunk of ``items`` that holds an ``unfinished`` image on a Ray cluster and merge the rows into
    ``table`` (written after each chunk). ``address``: a running cluster (``auto``, ``HOST:PORT``, ``ray://...``);
    None starts a local one on this machine. ``on_chunk(chunk, rows, notes)`` is called as each chunk comes back.

    Returns what the run measured: Ray's start-up seconds, the chunks, the worker pids, seconds per chunk.
    """
    require_ray()
    import ray

    todo = [chunk for chunk in chunks(items, spec.batch_size) if any(unfinished(it) for it in chunk)]
    stats: dict[str, Any] = {"chunks": len(todo), "workers": workers, "pids": [], "chunk_seconds": []}
    if not todo:
        return stats
    started = time.perf_counter()
    own_cluster = not ray.is_initialized()
    if own_cluster:
        _connect(address)
    stats["startup_seconds"] = time.perf_counter() - started
    try:
        for chunk, result in _failures_as_errors(_stream(spec, todo, workers, max_retries)):
            rows = {int(k): v for k, v in result["rows"].items()}
            for index, row in rows.items():
                table.rows[index] = row
            table.write()
            stats["pids"].append(int(result["pid"]))
            stats["chunk_seconds"].append(float(result["seconds"]))
            if on_chunk is not None:
                on_chunk(chunk, rows, result["notes"])
    finally:
        table.flush()  # the rows a throttled write held back
        if own_cluster:
            ray.shutdown()
    stats["seconds"] = time.perf_counter() - started
    return stats


AUTH_HINT = ("set RAY_AUTH_MODE=token (Ray reads the token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
             "~/.ray/auth_token, as `ray start` wrote it)")


def _connect(address: str | None) -> None:
    """``ray.init`` with its failures as one line. Ray's clusters ask for a token when one exists on the head's
    machine (a local ``ray.init`` writes ~/.ray/auth_token), but a driver given an explicit address sends its token
    only when RAY_AUTH_MODE=token is set: Ray's own message for that is a screen of retries."""
    import ray
    import ray.exceptions

    try:
        # Workers' own output stays in Ray's logs: the driver prints one line per image, as a local run does.
        ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        # Ray keeps the GCS client's AuthenticationError only as traceback text inside a RuntimeError.
        chain, cause = [], exc
        while cause is not None and len(chain) < 8:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(isinstance(c, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(c) for c in chain):
            raise InputError(f"{where} asks for an authentication token: {AUTH_HINT}") from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"could not connect to {where}: {first}") from exc


def _failures_as_errors(rows: Iterator) -> Iterator:
    """A worker's error (beyond the retries) as one line: what failed, and that the finished images are kept."""
    import ray.exceptions

    try:
        yield from rows
    except ray.exceptions.RayError as exc:
        cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"the Ray run failed ({cause}); finished images are kept: run the same command again to "
                         "finish the rest") from exc


def _stream(spec: ClusterSpec, todo: list[list[BatchItem]], workers: int,
            max_retries: int) -> Iterator[tuple[list[BatchItem], dict]]:
    """(chunk, its worker's answer) as the chunks finish, in any order."""
    import ray.data

    by_key = {_encode(chunk): chunk for chunk in todo}
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's own bar counts images
    rows = ray.data.from_items([{"chunk": key} for key in by_key], override_num_blocks=len(by_key))
    done = rows.map_batches(
        ChunkWorker, fn_constructor_kwargs={"spec": spec}, batch_size=1, concurrency=workers,
        num_cpus=spec.threads, num_gpus=spec.gpus or None,
        # A worker that dies is restarted and its chunk given again (Ray's actor restarts and task retries).
        max_restarts=max_retries, max_task_retries=max_retries,
    )
    for row in done.iter_rows():
        answer = json.loads(row["rows"])
        yield by_key[row["chunk"]], {**answer, "pid": row["pid"], "seconds": row["seconds"]}
