"""Files autobert writes get the permissions the user's umask gives any new file.

Libraries that write through temporary files (safetensors' weights, ``mkstemp``, ``mkdtemp``) leave them
``0600`` or ``0700``: a serving process, a colleague's account or a worker running as another user could not read
the model, the cache or the report. Everything autobert writes follows the umask instead (``-rw-r--r--`` and
``drwxr-xr-x`` under the usual 022), like what ``open()`` and ``mkdir`` create. Part of the public base (no engine
imports): the stage cache uses it too.
"""

from __future__ import annotations

import os
from pathlib import Path


def follow_umask(path: Path) -> None:
    """Give ``path`` (and everything under it) the mode the umask gives a new file or folder.

    Libraries that write through temporary files (safetensors' weights, ``mkstemp``) leave them ``0600``: a
    serving process running as another user could not read the model. Every file autobert writes follows the
    umask instead (``-rw-r--r--`` under the usual 022), like a file ``open()`` creates.
    """
    mask = umask()
    paths = [Path(path)] + (sorted(Path(path).rglob("*")) if Path(path).is_dir() else [])
    for item in paths:
        if item.is_symlink():
            continue
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux' /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # set and restore: the only portable way to read it
    os.umask(mask)
    return mask


__all__ = ["follow_umask", "umask"]
