"""Writing output files whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from pooler.errors import UsageError


def input_file(path: Path, what: str) -> Path:
    """`path`, when it is a file to read; else a usage error naming it (a missing file, a folder)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a {what}")
    if not path.exists():
        raise UsageError(f"no {what} at {path}")
    return path


def write_atomic(path: Path, content: str | Iterable[str], *, mode: int | None = None) -> None:
    """Write `content` (text, or chunks of text streamed one by one) to `path` through a temporary
    file in the same folder and a rename, so that a reader never sees half a file and a failure
    leaves any earlier file as it was. `mode` sets the file's permissions (e.g. 0o600 for a key);
    otherwise the usual mode under the umask applies. A path that cannot be written is a usage
    error naming it and the reason, never a traceback.

    A path that is neither a file nor a folder (`/dev/null`, `/dev/stdout`, a named pipe) has no
    file to replace: the content is written straight into it. (Renaming over it would replace the
    device itself with a plain file, for every program on the machine.)"""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        _write_through(path, content)
        return
    if path.is_dir():  # ("" is the current folder: `-o ""` was a traceback, review)
        raise UsageError(f"cannot write {path}: it is a directory")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            for chunk in [content] if isinstance(content, str) else content:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_through(path: Path, content: str | Iterable[str]) -> None:
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            for chunk in [content] if isinstance(content, str) else content:
                handle.write(chunk)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
