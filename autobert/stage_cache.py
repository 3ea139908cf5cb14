"""The one cache of expensive outputs, shared by trials, workers and later runs of a study.

Further-pretraining stages, distillation teachers, the task models and masks
of task-guided masking and augmented training rows are costly and depend on a
few of a trial's choices only. A technique describes what an output depends
on, hashes it with :func:`cache_key` (the only key function) and asks the
cache to :meth:`~StageCache.build` the entry once; every later trial (in this
process, another worker, or a later run of the study) gets the same folder back.

Every entry has a *kind*, the folder it lives in: ``stage``, ``teacher``,
``task-model``, ``masker``, ``mask``, ``augmentation`` for the built-ins, and
any name a third-party technique chooses (see :data:`KINDS`). Layout:
``<root>/<kind>/<key>/`` holds one entry, with ``autobert-cache.json`` (what
it was built from, when, its size) and the completion marker ``COMPLETE``.

Crash safety, the same for every kind: an entry is written in a temporary
folder ``<root>/<kind>/.tmp-<key>-*`` and renamed into place after the marker
is written, so a crash leaves at most a folder that is never served (no
marker) and that ``autobert cache prune`` removes once no build holds its lock.
Builders of the same key take a file lock (``<root>/<kind>/.locks/<key>.lock``):
one builds, the others wait and then reuse its entry. Each use of an entry
appends a line to its ``hits.log``.

The root is ``<study dir>/cache`` by default; the study file's ``cache_dir``
puts it elsewhere, e.g. on a path several workers share. A technique reaches
it as ``run.cache`` (``StageCache(run.cache_dir)``).
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
from typing import Any, Callable, Iterable, Iterator

from filelock import FileLock, Timeout

from autobert.permissions import follow_umask

MARKER = "COMPLETE"
INFO = "autobert-cache.json"
HITS = "hits.log"
TMP_PREFIX = ".tmp-"
LOCKS = ".locks"
#: The built-in kinds and what their entries hold (``autobert cache ls`` lists any other kind too).
KINDS = {
    "stage": "a further-pretraining stage's checkpoint (model, optimizer, scheduler) after some steps",
    "teacher": "a distillation teacher's logits on the training split",
    "task-model": "a sequence classifier fine-tuned for task-guided masking",
    "masker": "selective masking's token classifier",
    "mask": "per-token scores or marks of a corpus (entropy, selective)",
    "augmentation": "the augmented training rows of one method, ratio and seed",
}


def cache_key(described: Any, length: int = 24) -> str:
    """A hash of ``described`` (JSON-serialisable; keys sorted, so order does not matter).

    The one key function of autobert: every cache entry (and any other
    content identity, such as an ablation arm's) is named by it.

    >>> cache_key({"b": 1, "a": [1, 2]}) == cache_key({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def content_key(chunks: Iterable[bytes], length: int = 24) -> str:
    """A hash of a stream of bytes (a corpus, a file) too large to describe as one JSON value.

    The streaming twin of :func:`cache_key`: a fingerprint of data rather than of a description.
    """
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:length]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


@dataclass(frozen=True)
class CacheEntry:
    """One complete entry, as listed by ``autobert cache ls``."""

    kind: str
    key: str
    path: Path
    size: int
    created: float
    last_used: float
    hits: int
    description: dict[str, Any]

    @property
    def namespace(self) -> str:
        """The entry's kind (its earlier name)."""
        return self.kind

    def summary(self, width: int = 24) -> str:
        """What the entry was built from, in short: its description's short scalar values."""
        return " ".join(f"{k}={v}" for k, v in self.description.items()
                        if isinstance(v, (str, int, float)) and len(str(v)) < width)


class StageCache:
    """The cache under ``root``.

    Args:
        root: The cache folder (created when the first entry is written).
        lock_timeout: Seconds to wait for another process building the same
            key before giving up (``-1``: wait for ever).

    Every method takes the entry's ``kind`` first (a folder name: letters,
    digits, ``-`` and ``_``), then its ``key`` (from :func:`cache_key`,
    possibly with a suffix such as a step count).
    """

    def __init__(self, root: str | os.PathLike, lock_timeout: float = -1):
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.hits = 0
        self.builds = 0

    # -- reading -------------------------------------------------------------

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def is_complete(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / MARKER).is_file()

    def get(self, kind: str, key: str, *, record: bool = True) -> Path | None:
        """The entry's folder if it is complete (a hit is recorded), else ``None``."""
        path = self.path(kind, key)
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

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        """The complete entries' keys of ``kind`` that start with ``prefix``, sorted."""
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.name.startswith(prefix) and not p.name.startswith(".") and (p / MARKER).is_file())

    # -- writing -------------------------------------------------------------

    def lock(self, kind: str, name: str) -> FileLock:
        """A file lock for building ``name`` (a key, or a family of keys) of ``kind``."""
        folder = self.root / kind / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / f"{name}.lock"), timeout=self.lock_timeout)

    def staging(self, kind: str, key: str) -> Path:
        """A fresh temporary folder to build ``key`` in (same file system as the entry)."""
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=folder))

    def commit(self, kind: str, key: str, staged: Path, description: Any = None) -> Path:
        """Publish ``staged`` as the entry ``key``: write its info and marker, then rename it into place.

        If a complete entry already exists, ``staged`` is discarded and the
        existing entry kept (its content is the same by construction).
        """
        staged = Path(staged)
        final = self.path(kind, key)
        info = {"kind": kind, "key": key, "created": time.time(), "size": folder_size(staged),
                "description": description if description is not None else {}}
        (staged / INFO).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        with open(staged / MARKER, "w", encoding="utf-8") as f:
            f.write("ok\n")
            f.flush()
            os.fsync(f.fileno())
        follow_umask(staged)  # mkdtemp's 0700 (and safetensors' 0600): a worker running as another user reads it too
        if final.exists() and not (final / MARKER).is_file():
            # Never complete (a crash, or written by hand or by an older version): replace it.
            _remove(final)
        try:
            os.rename(staged, final)
        except OSError:
            if not (final / MARKER).is_file():
                raise
            shutil.rmtree(staged, ignore_errors=True)
        self.builds += 1
        return final

    def build(self, kind: str, key: str, builder: Callable[[Path], None], description: Any = None) -> Path:
        """The entry ``key`` of ``kind``, built by ``builder(folder)`` unless it exists.

        ``builder`` writes the entry's files into the folder it is given. Under
        the key's lock: if another process built the entry meanwhile, it is
        reused and ``builder`` is not called. If ``builder`` raises, nothing is
        published.
        """
        hit = self.get(kind, key)
        if hit is not None:
            return hit
        with self.lock(kind, key):
            hit = self.get(kind, key)
            if hit is not None:
                return hit
            staged = self.staging(kind, key)
            try:
                builder(staged)
                return self.commit(kind, key, staged, description)
            finally:
                shutil.rmtree(staged, ignore_errors=True)

    def discard(self, kind: str, key: str) -> bool:
        """Remove the entry ``key`` (e.g. one whose content turned out unreadable); whether one was there.

        Renamed away first, so a reader never sees a half-deleted entry as complete.
        """
        path = self.path(kind, key)
        if not path.exists():
            return False
        trash = path.parent / f"{TMP_PREFIX}trash-{key}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(path, trash)
        except OSError:
            return False
        _remove(trash)
        return True

    # -- listing and pruning -------------------------------------------------

    def kinds(self) -> list[str]:
        """The kinds that have a folder under the root, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    namespaces = kinds  # the earlier name

    def entries(self, kind: str | None = None) -> list[CacheEntry]:
        """Every complete entry (of ``kind``, or of all), oldest use first."""
        found = []
        for k in [kind] if kind else self.kinds():
            for key in self.keys(k):
                path = self.path(k, key)
                try:
                    info = json.loads((path / INFO).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    info = {}
                hits_file = path / HITS
                hits = len(hits_file.read_text(encoding="utf-8").splitlines()) if hits_file.is_file() else 0
                created = float(info.get("created", (path / MARKER).stat().st_mtime))
                last_used = hits_file.stat().st_mtime if hits_file.is_file() else created
                found.append(CacheEntry(k, key, path, int(info.get("size", 0)) or folder_size(path), created,
                                        last_used, hits, info.get("description", {})))
        return sorted(found, key=lambda e: e.last_used)

    def leftovers(self, kind: str | None = None) -> Iterator[Path]:
        """What is no complete entry, of any kind: builds that did not finish (or are in progress).

        A temporary build folder, an entry folder without the completion
        marker, or a stray file beside the entries (an older version's cache
        format); the lock folder is not one.
        """
        for k in [kind] if kind else self.kinds():
            folder = self.root / k
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name == LOCKS or (path.is_dir() and not path.name.startswith(".") and (path / MARKER).is_file()):
                    continue
                yield path

    def prune(self, *, older_than: float | None = None, kind: str | None = None, everything: bool = False,
              namespace: str | None = None) -> list[Path]:
        """Remove unfinished builds, and entries unused for ``older_than`` seconds (or every entry).

        An unfinished build whose key's lock is held (it is in progress) is
        left alone. ``namespace`` is the earlier name of ``kind``. Returns the
        removed paths.
        """
        kind = kind or namespace
        removed = []
        for path in list(self.leftovers(kind)):
            if _lock_is_free(self, path.parent.name, _build_key(path.name)):
                _remove(path)
                removed.append(path)
        now = time.time()
        for entry in self.entries(kind):
            if everything or (older_than is not None and now - entry.last_used > older_than):
                if self.discard(entry.kind, entry.key):
                    removed.append(entry.path)
        return removed


def _build_key(name: str) -> str:
    """The key a leftover was (being) built under: ``.tmp-<key>-<random>``, ``<key>`` or ``<key>.<suffix>``."""
    if name.startswith(TMP_PREFIX):
        return name[len(TMP_PREFIX):].rsplit("-", 1)[0]
    return name.lstrip(".").split(".", 1)[0]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _lock_is_free(cache: StageCache, kind: str, key: str) -> bool:
    """No build of ``key`` (or of the family its lock is named after) is running."""
    folder = cache.root / kind / LOCKS
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
