"""Files and folders only their owner may use: 0600 and 0700, whatever the process umask."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create a folder, and any missing parents, with mode 0700.

    Folders that exist already keep their mode: they may be shared on purpose (/tmp, /srv).
    """
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        # mkdir's mode passes through the umask; chmod does not.
        os.chmod(folder, DIR_MODE)


def private_file(path: Path) -> bool:
    """Create an empty file with mode 0600 (False when it exists; its mode is left alone)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True
