"""Running `autobert` in-process as a user meets it, for the fuzzing harnesses (study files, frozen configs)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from autobert.cli import main
from autobert.testing import write_study

#: A problem of an ``error:`` report starts with its key (and the key's line in the file).
KEY = re.compile(r"^(?P<key>[A-Za-z_][\w.-]*|\(top level\))(?: \(line \d+\))?: ")


def run_cli(*argv: str) -> tuple[int, str]:
    """Run the command line in-process; a traceback is a failure of the property."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(argv))
        except SystemExit as exc:  # argparse
            rc = exc.code
        except BaseException as exc:  # noqa: BLE001 - the property: nothing escapes as a traceback
            raise AssertionError(f"autobert {' '.join(argv)} raised {type(exc).__name__}: {exc}") from exc
    return rc, out.getvalue() + err.getvalue()


def problems_of(output: str) -> list[str]:
    """The problems of one ``error:`` report, each joined back into one line."""
    problems: list[str] = []
    for line in output.splitlines():
        if line.startswith("  - "):
            problems.append(line[4:])
        elif problems and line.startswith("    "):
            problems[-1] += " " + line.strip()
    return problems


#: The recipe the replay tests export: one epoch of finetune alone, fixed, so a search of one trial finds it.
RECIPE = {"learning_rate": 3e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "weight_decay": 0.0}


def export_recipe(root: Path, name: str) -> Path:
    """A real search's ``best.yaml`` over a tiny task in ``root`` (finetune only, :data:`RECIPE`)."""
    path = write_study(root, name=name, n_train=48, n_validation=16, only=["finetune"],
                       techniques={"finetune": dict(RECIPE)})
    assert main(["search", str(path), "--n-trials", "1"]) == 0
    return root / name / "best.yaml"
