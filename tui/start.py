"""Starting the dashboard: the Overview is read while Textual is imported and the app mounts.

`pooler tui` used to import Textual, start the app, and only then, once it had mounted, begin reading
the ledger (which imports SQLAlchemy first). `prepare` starts that first read, `dashboard.overview`,
the same call in its own read transaction, before it imports Textual, and hands it to the app, whose
first load then waits for it instead of reading again. The figures are the same ones, read the same
way; only the moment the read starts changes (issue #5).

Both halves are Python code, so a thread would mostly take turns with the import under the GIL. On
Linux the read therefore runs in a forked child process, on the other core, and comes back pickled
through a pipe; the fork happens before any thread or connection exists in the process (otherwise,
and elsewhere than on Linux, it runs in a thread). Whatever goes wrong on that way (the child dies,
its answer cannot be read) makes the app read the Overview itself, as it always did; an error the
read itself raises comes back as the message the app would have shown for it. This module imports
nothing of Textual.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from typing import TYPE_CHECKING, Any

from pooler.errors import PoolerError
from pooler.services import dashboard  # before the fork: the app needs it too, so the child inherits it
from pooler.services.context import Context

if TYPE_CHECKING:
    from pooler.services.dashboard import Overview
    from tui.app import PoolerApp


class EarlyFailure(PoolerError):
    """The early read failed; the message is the one the app shows for that failure."""


def _read_overview(ctx: Context, period: str | None) -> tuple[str, Any]:
    """("overview", the Overview) or ("error", the message the app shows for the failure)."""
    try:
        return "overview", dashboard.overview(ctx, period)
    except PoolerError as exc:
        return "error", str(exc)
    except Exception as exc:  # as the app's `_error_text` says it
        return "error", f"unexpected {type(exc).__name__}: {exc}"


def _can_fork() -> bool:
    # Forking is sound only while this thread is the process's only one (a lock held by another
    # thread would stay held in the child forever), and only Linux has no reservations about it.
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


class EarlyOverview:
    """`dashboard.overview(ctx, period)`, started at construction in a child process (or a thread)."""

    def __init__(self, ctx: Context, period: str | None, *, fork: bool | None = None) -> None:
        self.ctx = ctx
        self.period = period
        self._done = threading.Event()
        self._answer: tuple[str, Any] | None = None
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None
        if fork if fork is not None else _can_fork():
            self._fork()
        else:
            threading.Thread(target=self._in_thread, name="pooler-overview", daemon=True).start()

    @property
    def forked(self) -> bool:
        return self._pid is not None

    def _in_thread(self) -> None:
        self._answer = _read_overview(self.ctx, self.period)
        self._done.set()

    def _fork(self) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: read, answer, and leave without running any of the parent's exit code
            try:
                os.close(read_end)
                data = pickle.dumps(_read_overview(self.ctx, self.period), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(data)
            finally:
                os._exit(0)
        os.close(write_end)
        self._pid, self._fd = pid, read_end

    def _collect(self) -> tuple[str, Any] | None:
        """The child's answer (waiting for it), or None when there is none to be had."""
        assert self._fd is not None and self._pid is not None
        chunks = []
        try:
            with os.fdopen(self._fd, "rb") as pipe:
                while chunk := pipe.read(1 << 16):
                    chunks.append(chunk)
        finally:
            try:
                os.waitpid(self._pid, 0)
            except ChildProcessError:
                pass
        try:
            answer = pickle.loads(b"".join(chunks))
        except Exception:  # the child died before answering (nothing, or half an answer)
            return None
        return answer if isinstance(answer, tuple) and len(answer) == 2 else None

    def result(self) -> "Overview":
        """The Overview (waiting for it); raises `EarlyFailure` with the app's message when the read
        failed. Read here, in the caller's thread, if the child gave no answer."""
        with self._lock:
            if self._pid is not None and not self._done.is_set():
                self._answer = self._collect()
                self._done.set()
        self._done.wait()
        answer = self._answer or _read_overview(self.ctx, self.period)
        kind, value = answer
        if kind == "error":
            raise EarlyFailure(value)
        return value


def prepare(ctx: Context, period: str | None = None, *, early: bool = True,
            verify_on_open: bool = True) -> "PoolerApp":
    """The dashboard app for `ctx`'s ledger, its Overview already being read (`early=False`: read
    once the app has mounted, as before; for comparison in benchmarks/tui_open.py)."""
    overview = EarlyOverview(ctx, period) if early else None
    from tui.app import PoolerApp

    return PoolerApp(ctx.db, period=period, ctx=ctx, verify_on_open=verify_on_open, early=overview)


def run(db: str, period: str | None = None, ctx: Context | None = None) -> int:
    """Run the dashboard in the terminal; the exit code."""
    app = prepare(ctx if ctx is not None else Context(db=db), period)
    code = app.run()
    return code if isinstance(code, int) else (app.return_code or 0)
