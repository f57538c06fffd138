"""Folder runs on Ray (``i2s reconstruct DIR --engine ray``) on a local 2-CPU Ray cluster, real weights, one step
per stage: a worker killed mid-run retried, a killed driver resumed, and either way the same bytes as a local run; a
corrupt file an error row; a cluster that asks for a token one clear line.

Every run is a separate ``i2s`` process, as a user's would be. The local reference runs with one PyTorch thread, as
each Ray worker does (--threads-per-worker 1): equal thread counts make equal float sums, so the bytes are equal by
design, not by luck.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.real_weights, pytest.mark.cluster]

STEPS = ["--w-steps", "1", "--noise-steps", "1", "--device", "cpu", "--quiet"]
TIMEOUT = 900
# metrics.json entries that describe the run rather than the result: how long it took, on which machine.
RUN_ENTRIES = {"machine", "written_at"}


def _i2s() -> str:
    return str(Path(sys.executable).parent / "i2s")


# The test cluster asks for a token, as Ray's clusters do once a token exists on the machine; the token is the
# tests' own, so nothing depends on what ~/.ray holds.
TOKEN = secrets.token_hex(32)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": TOKEN, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray cluster of 2 CPUs on this machine (what `ray start --head` runs), its address."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    temp = Path("/tmp") / f"i2s-ray-{os.getpid()}"  # Ray's socket paths must stay short
    subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats", f"--temp-dir={temp}"], check=True, capture_output=True, timeout=300,
                   env=_env())
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, real_generator):
    """Three small face photos (sampled faces at 96 px) and a truncated PNG."""
    from image2stylegan.apps.sample import sample
    from image2stylegan.io import tensor_to_uint8

    root = tmp_path_factory.mktemp("photos")
    for seed in (11, 12, 13):
        s = sample(real_generator, seed)
        with torch.no_grad():
            pixels = tensor_to_uint8(real_generator.synthesis(s.ws, s.noise).clamp(-1, 1)[0])
        Image.fromarray(pixels).resize((96, 96), Image.LANCZOS).save(root / f"face{seed}.png")
    good = (root / "face11.png").read_bytes()
    (root / "broken.png").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    # Relative input paths, as users type them: results.csv and metrics.json record them as given.
    done = subprocess.run([_i2s(), "reconstruct", folder.name, "--outdir", str(out), *STEPS], env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    return out


def _ray(folder: Path, out: Path, address: str, *, workers: int = 2, popen: bool = False, env=None):
    command = [_i2s(), "reconstruct", folder.name, "--outdir", str(out), *STEPS, "--engine", "ray",
               "--address", address, "--workers", str(workers)]
    if popen:
        return subprocess.Popen(command, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=folder.parent)
    return subprocess.run(command, env=env or _env(), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=folder.parent)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "results.csv", newline="") as f:
        return {row["output"]: row for row in csv.DictReader(f)}


def _result(metrics: dict) -> dict:
    """metrics.json without what describes the run (times, machine)."""
    if isinstance(metrics, dict):
        return {k: _result(v) for k, v in metrics.items() if k not in RUN_ENTRIES and "seconds" not in k}
    if isinstance(metrics, list):
        return [_result(v) for v in metrics]
    return metrics


def _assert_same_outputs(a: Path, b: Path) -> None:
    rows_a, rows_b = _rows(a), _rows(b)
    columns = ("file", "status", "message", "psnr_w_plus_db", "psnr_noise_db", "ssim", "lpips")
    assert {k: [r[c] for c in columns] for k, r in rows_a.items()} == {
        k: [r[c] for c in columns] for k, r in rows_b.items()}
    for name, row in rows_a.items():
        if row["status"] != "ok":
            continue
        files_a = sorted(p.name for p in (a / name).iterdir())
        assert files_a == sorted(p.name for p in (b / name).iterdir())
        for file in files_a:
            if file == "metrics.json":
                ma, mb = (json.loads((d / name / file).read_text()) for d in (a, b))
                assert _result(ma) == _result(mb), name
            else:
                assert (a / name / file).read_bytes() == (b / name / file).read_bytes(), f"{name}/{file}"


def _worker_pids() -> list[int]:
    """The processes of Ray Data's actors running our ChunkWorker (Ray names them after the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ChunkWorker" in title:
                pids.append(int(entry.name))
    return pids


def _wait(predicate, what: str, run: subprocess.Popen, seconds: float = TIMEOUT):
    """Poll ``predicate`` until it holds; fail at once, with the run's errors, if the run ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if run.poll() is not None:
            raise AssertionError(f"the run ended (exit {run.returncode}) before {what}: {run.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _ok_rows(out: Path) -> list[str]:
    try:
        return [name for name, row in _rows(out).items() if row["status"] == "ok"]
    except (OSError, KeyError):
        return []


def test_a_worker_killed_mid_run_is_retried_and_the_outputs_are_whole(cluster, folder, local_run, tmp_path):
    out = tmp_path / "ray"
    run = _ray(folder, out, cluster, popen=True)
    try:
        _wait(lambda: _ok_rows(out), "a first finished image", run)  # the workers are busy with the other chunks
        victim = _wait(_worker_pids, "a worker process", run)[0]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=TIMEOUT)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))  # nothing half-written is left
    _assert_same_outputs(local_run, out)


def test_a_killed_driver_is_resumed_and_the_run_writes_what_a_local_run_writes(cluster, folder, local_run, tmp_path):
    out = tmp_path / "ray"
    run = _ray(folder, out, cluster, popen=True)
    try:
        first = _wait(lambda: _ok_rows(out), "a first finished image", run)[0]
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        run.kill()
    kept = (out / first / "metrics.json").stat().st_mtime_ns
    again = _ray(folder, out, cluster)
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stdout
    assert (out / first / "metrics.json").stat().st_mtime_ns == kept  # finished images are not redone
    rows = _rows(out)
    assert [rows[f"face{s}"]["status"] for s in (11, 12, 13)] == ["ok"] * 3
    assert rows["broken"]["status"] == "error" and "truncated" in rows["broken"]["message"]
    assert "3 of 4 images reconstructed, 1 failed" in again.stdout
    _assert_same_outputs(local_run, out)


def test_a_cluster_that_asks_for_a_token_gets_one_line_that_says_how_to_send_it(cluster, folder, tmp_path):
    # What a user meets whose cluster was started where a token exists: the driver does not send the token unless
    # RAY_AUTH_MODE=token is set. (RAY_gcs_server_port_wait_time_s: Ray's retries for 2 s instead of 20.)
    env = {k: v for k, v in _env(RAY_gcs_server_port_wait_time_s="2").items() if not k.startswith("RAY_AUTH")}
    out = tmp_path / "ray"
    done = _ray(folder, out, cluster, env={**env, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "asks for an authentication token" in last and "RAY_AUTH_MODE=token" in last
    assert "Traceback" not in done.stderr
    assert not (out / "face11").exists()


def test_without_ray_the_engine_says_what_to_install(folder, tmp_path, monkeypatch):
    from image2stylegan.cluster import ray_folder
    from image2stylegan.errors import InputError

    monkeypatch.setattr(ray_folder, "ray_available", lambda: False)
    with pytest.raises(InputError, match=r"pip install 'image2stylegan\[cluster\]'"):
        ray_folder.require_ray()


def test_a_cluster_that_cannot_be_reached_is_one_line(monkeypatch):
    """ray.init's failures as Ray raises them (the token refusal only as traceback text inside a RuntimeError)."""
    import ray

    from image2stylegan.cluster import ray_folder
    from image2stylegan.errors import InputError

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379\nmore of Ray's text")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(InputError, match=r"^could not connect to the Ray cluster at 10.0.0.9:6379: Failed to "
                                         r"connect to Ray cluster at 10.0.0.9:6379$"):
        ray_folder._connect("10.0.0.9:6379")

    def unauthenticated(**kwargs):
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback ... InvalidAuthToken ...")
        except RuntimeError as inner:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379") from inner

    monkeypatch.setattr(ray, "init", unauthenticated)
    with pytest.raises(InputError, match="asks for an authentication token: set RAY_AUTH_MODE=token"):
        ray_folder._connect("10.0.0.9:6379")
