"""What a run leaves for the combination step: its validation probabilities and, for the best runs, its weights.

Both go to Optuna's artifact store (``optuna.artifacts``, a folder:
``combine.artifact_dir``, default ``<study dir>/artifacts``), so they travel
with the study: the dashboard lists them, a resumed study and every worker
find them. The trial's record says which artifact is which run's
(:attr:`TrialRecord.predictions`, :attr:`TrialRecord.weights`).

Crash safety: a file is first written whole to a temporary file, then
copied into the store under a fresh id, and only then named in the trial's
attributes. A SIGKILL in the middle of a write leaves an orphaned file that no
record names, so nothing half-written is ever read.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from autobert.config.schema import StudyConfig
from autobert.errors import AutobertError
from autobert.store import record
from autobert.store.record import TrialRecord

#: The probabilities' file name in the store (the dashboard shows it).
PROBABILITIES = "validation-probabilities-seed-{seed}.npy"
#: The run's weights averaged over its last checkpoints (``combine.kind: checkpoints``), scored on validation.
AVERAGED = "validation-probabilities-seed-{seed}-checkpoints.npy"
WEIGHTS = "model-seed-{seed}.zip"


def artifact_store(study: StudyConfig) -> FileSystemArtifactStore:
    """The study's artifact store (its folder is created here)."""
    folder = study.artifact_path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutobertError(f"combine.artifact_dir {folder}: cannot create it ({exc.strerror or exc}); choose a "
                            "writable folder, or set `combine: none` to keep no predictions") from None
    return FileSystemArtifactStore(str(folder))


def _upload(store: FileSystemArtifactStore, trial: optuna.Trial, name: str, write) -> str:
    """Write a file with ``write(path)`` in a temporary folder, then upload it whole; returns its artifact id.

    ``trial`` is the live ``optuna.Trial`` (Optuna names the artifact in its system attributes).
    """
    with tempfile.TemporaryDirectory(prefix="autobert-artifact-") as folder:
        path = Path(folder) / name
        write(path)
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def save_probabilities(store: FileSystemArtifactStore, trial: Any, seed: int, probabilities: np.ndarray,
                       fingerprint: str | None, *, averaged: np.ndarray | None = None,
                       checkpoints: int | None = None) -> None:
    """Store one run's validation probabilities (rows x classes) with the trial and name them in its record.

    ``averaged``: those of the run's weights averaged over its last ``checkpoints`` checkpoints, stored beside
    them (the entry's ``checkpoints`` key names both) in the same write of the record.
    """
    def upload(name: str, values: np.ndarray) -> str:
        array = np.asarray(values, dtype=np.float64)  # as the run computed them: a replay mixes the same numbers
        return _upload(store, trial, name.format(seed=seed), lambda path: np.save(path, array))

    entry = {"artifact": upload(PROBABILITIES, probabilities), "fingerprint": fingerprint,
             "rows": int(np.shape(probabilities)[0]), "classes": int(np.shape(probabilities)[1])}
    if averaged is not None:
        entry["checkpoints"] = {"artifact": upload(AVERAGED, averaged), "count": int(checkpoints or 0)}
    stored = dict(TrialRecord.from_trial(trial).predictions or {})
    stored[str(seed)] = entry
    record.store(trial, predictions=stored)


def save_weights(store: FileSystemArtifactStore, trial: Any, seed: int, folder: Path) -> None:
    """Store a saved model folder (zipped, uncompressed) as the run's weights and name it in the trial's record."""

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for item in sorted(Path(folder).rglob("*")):
                if item.is_file():
                    archive.write(item, item.relative_to(folder).as_posix())

    artifact = _upload(store, trial, WEIGHTS.format(seed=seed), write)
    stored = dict(TrialRecord.from_trial(trial).weights or {})
    stored[str(seed)] = artifact
    record.store(trial, weights=stored)


def load_probabilities(store: FileSystemArtifactStore, entry: dict[str, Any]) -> np.ndarray:
    """A run's stored probabilities (``entry`` is its :attr:`TrialRecord.predictions` value, or that value's
    ``checkpoints`` entry for the averaged model's)."""
    with store.open_reader(entry["artifact"]) as reader:
        return np.load(io.BytesIO(reader.read()))


def unpack_weights(store: FileSystemArtifactStore, artifact: str, into: Path) -> Path:
    """Unpack a run's stored model folder into ``into`` (created); returns it."""
    into.mkdir(parents=True, exist_ok=True)
    with store.open_reader(artifact) as reader, zipfile.ZipFile(io.BytesIO(reader.read())) as archive:
        archive.extractall(into)
    return into


def drop_weights(store: FileSystemArtifactStore, trial: optuna.trial.FrozenTrial) -> None:
    """Remove a finished trial's stored weights (it fell out of the runs that keep them).

    Optuna does not let a finished trial's attributes change, so its record
    still names the files: :func:`kept_weights` reads only the ones still there.
    """
    for artifact in (TrialRecord.from_trial(trial).weights or {}).values():
        try:
            store.remove(artifact)
        except Exception:  # already gone (another worker removed it): nothing is lost
            pass


def kept_weights(store: FileSystemArtifactStore, trial: Any) -> dict[str, str]:
    """``{seed: artifact id}`` of the trial's stored weights whose files are still in the store."""
    kept = {}
    for seed, artifact in (TrialRecord.from_trial(trial).weights or {}).items():
        try:
            store.open_reader(artifact).close()
        except Exception:  # removed (the run fell out of the kept ones), or the store was cleaned by hand
            continue
        kept[seed] = artifact
    return kept


__all__ = ["artifact_store", "save_probabilities", "save_weights", "load_probabilities", "unpack_weights",
           "drop_weights", "kept_weights", "PROBABILITIES", "AVERAGED", "WEIGHTS"]
