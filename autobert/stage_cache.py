"""A content-addressed cache of expensive stage outputs, shared by trials and workers.

Further pretraining, distillation teachers and augmented data are costly and
depend only on a few of a trial's choices. A technique describes what an output
depends on, hashes it into a key (:func:`cache_key`) and asks the cache to
:meth:`~StageCache.build` the entry once; every later trial (in this process,
another worker, or a later run of the study) gets the same folder back.

Layout: ``<root>/<namespace>/<key>/`` holds one entry, with
``autobert-cache.json`` (what it was built from, when, its size) and the
completion marker ``COMPLETE``. An entry is written in a temporary folder
``<root>/<namespace>/.tmp-<key>-*`` and renamed into place after the marker is
written, so a crash leaves at most a temporary folder, which is never served
and which ``autobert cache prune`` removes. Builders of the same key take a
file lock (``<root>/<namespace>/.locks/<key>.lock``): one builds, the others
wait and then reuse its entry. Each use of an entry appends a line to its
``hits.log``.

The root is ``<study dir>/cache`` by default; the study file's ``cache_dir``
puts it elsewhere, e.g. on a path several workers share.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock, Timeout

MARKER = "COMPLETE"
INFO = "autobert-cache.json"
HITS = "hits.log"
TMP_PREFIX = ".tmp-"
LOCKS = ".locks"


def cache_key(described: Any, length: int = 24) -> str:
    """A hash of ``described`` (JSON-serialisable; keys sorted, so order does not matter)."""
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


@dataclass(frozen=True)
class CacheEntry:
    """One complete entry, as listed by ``autobert cache ls``."""

    namespace: str
    key: str
    path: Path
    size: int
    created: float
    last_used: float
    hits: int
    description: dict[str, Any]


class StageCache:
    """The cache under ``root``.

    Args:
        root: The cache folder (created when the first entry is written).
        lock_timeout: Seconds to wait for another process building the same
            key before giving up (``-1``: wait for ever).
    """

    def __init__(self, root: str | os.PathLike, lock_timeout: float = -1):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.hits = 0
        self.builds = 0

    # -- reading -------------------------------------------------------------

    def path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key

    def is_complete(self, namespace: str, key: str) -> bool:
        return (self.path(namespace, key) / MARKER).is_file()

    def get(self, namespace: str, key: str, *, record: bool = True) -> Path | None:
        """The entry's folder if it is complete (a hit is recorded), else ``None``."""
        path = self.path(namespace, key)
        if not (path / MARKER).is_file():
            return None
        if record:
            self.hits += 1
            try:
                with open(path / HITS, "a", encoding="utf-8") as f:
                    f.write(f"{time.time():.0f} {os.getpid()}\n")
            except OSError:
                pass  # a read-only shared cache still serves its entries
        return path

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        """The complete entries' keys in ``namespace`` that start with ``prefix``, sorted."""
        folder = self.root / namespace
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.name.startswith(prefix) and not p.name.startswith(".") and (p / MARKER).is_file())

    # -- writing -------------------------------------------------------------

    def lock(self, namespace: str, name: str) -> FileLock:
        """A file lock for building ``name`` (a key, or a family of keys) in ``namespace``."""
        folder = self.root / namespace / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / f"{name}.lock"), timeout=self.lock_timeout)

    def staging(self, namespace: str, key: str) -> Path:
        """A fresh temporary folder to build ``key`` in (same file system as the entry)."""
        folder = self.root / namespace
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=folder))

    def commit(self, namespace: str, key: str, staged: Path, description: Any = None) -> Path:
        """Publish ``staged`` as the entry ``key``: write its info and marker, then rename it into place.

        If a complete entry already exists, ``staged`` is discarded and the
        existing entry kept (its content is the same by construction).
        """
        staged = Path(staged)
        final = self.path(namespace, key)
        info = {"namespace": namespace, "key": key, "created": time.time(), "size": folder_size(staged),
                "description": description if description is not None else {}}
        (staged / INFO).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        with open(staged / MARKER, "w", encoding="utf-8") as f:
            f.write("ok\n")
            f.flush()
            os.fsync(f.fileno())
        if final.exists() and not (final / MARKER).is_file():
            # Not ours and never complete (written by hand or by an older version): replace it.
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(staged, final)
        except OSError:
            if not (final / MARKER).is_file():
                raise
            shutil.rmtree(staged, ignore_errors=True)
        self.builds += 1
        return final

    def build(self, namespace: str, key: str, builder: Callable[[Path], None], description: Any = None) -> Path:
        """The entry ``key``, built by ``builder(folder)`` unless it exists.

        ``builder`` writes the entry's files into the folder it is given. Under
        the key's lock: if another process built the entry meanwhile, it is
        reused and ``builder`` is not called. If ``builder`` raises, nothing is
        published.
        """
        hit = self.get(namespace, key)
        if hit is not None:
            return hit
        with self.lock(namespace, key):
            hit = self.get(namespace, key)
            if hit is not None:
                return hit
            staged = self.staging(namespace, key)
            try:
                builder(staged)
                return self.commit(namespace, key, staged, description)
            finally:
                shutil.rmtree(staged, ignore_errors=True)

    # -- listing and pruning -------------------------------------------------

    def namespaces(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def entries(self, namespace: str | None = None) -> list[CacheEntry]:
        """Every complete entry (of ``namespace``, or of all), oldest use first."""
        found = []
        for ns in [namespace] if namespace else self.namespaces():
            for key in self.keys(ns):
                path = self.path(ns, key)
                try:
                    info = json.loads((path / INFO).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    info = {}
                hits_file = path / HITS
                hits = len(hits_file.read_text(encoding="utf-8").splitlines()) if hits_file.is_file() else 0
                created = float(info.get("created", (path / MARKER).stat().st_mtime))
                last_used = hits_file.stat().st_mtime if hits_file.is_file() else created
                found.append(CacheEntry(ns, key, path, int(info.get("size", 0)) or folder_size(path), created,
                                        last_used, hits, info.get("description", {})))
        return sorted(found, key=lambda e: e.last_used)

    def leftovers(self) -> Iterator[Path]:
        """Temporary folders of builds that did not finish (or are in progress)."""
        for ns in self.namespaces():
            yield from sorted((self.root / ns).glob(f"{TMP_PREFIX}*"))

    def prune(self, *, older_than: float | None = None, namespace: str | None = None, everything: bool = False) -> list[Path]:
        """Remove unfinished builds, and entries unused for ``older_than`` seconds (or every entry).

        A temporary folder whose build still holds its lock is left alone.
        Returns the removed folders.
        """
        removed = []
        for tmp in list(self.leftovers()):
            ns = tmp.parent.name
            if namespace and ns != namespace:
                continue
            key = tmp.name[len(TMP_PREFIX):].rsplit("-", 1)[0]
            if _lock_is_free(self, ns, key):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
        now = time.time()
        for entry in self.entries(namespace):
            if everything or (older_than is not None and now - entry.last_used > older_than):
                # Rename first: a reader never sees a half-deleted entry as complete.
                trash = entry.path.parent / f"{TMP_PREFIX}trash-{entry.key}-{os.getpid()}"
                try:
                    os.rename(entry.path, trash)
                except OSError:
                    continue
                shutil.rmtree(trash, ignore_errors=True)
                removed.append(entry.path)
        return removed


def _lock_is_free(cache: StageCache, namespace: str, key: str) -> bool:
    """No build of ``key`` (or of the family its lock is named after) is running."""
    folder = cache.root / namespace / LOCKS
    if not folder.is_dir():
        return True
    names = [p.stem for p in folder.glob("*.lock")]
    for name in [n for n in names if key.startswith(n)] or [key]:
        try:
            with FileLock(str(folder / f"{name}.lock"), timeout=0):
                pass
        except Timeout:
            return False
    return True
