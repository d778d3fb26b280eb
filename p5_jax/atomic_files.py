"""Files written whole or not at all, for records that a crash must not leave half-written."""
from __future__ import annotations

import os
import pathlib
import tempfile


def write_atomically(path, data: str | bytes) -> pathlib.Path:
    """Writes `data` (text or bytes) to `path` through a temporary file in the same folder,
    renamed over `path`: a crash leaves the old file or none, never part of the new one, and an
    error leaves no temporary file behind. The file is readable by all (mode 644)."""
    path = pathlib.Path(path)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if isinstance(data, bytes) else "w") as file:
            file.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        pathlib.Path(partial).unlink(missing_ok=True)
        raise
    return path
