"""One function run in a second process while this one goes on with other work: `Beside`.

The audit report runs `ledger verify` this way. Verifying recomputes every hash, replays the journal
and digests every attached row; building the report reads the run and the usage and settles them.
Both take seconds of one core and neither needs the other until the report is put together, so on a
machine with a second core they overlap.

The second process is forked: it starts at once with everything already imported, and opens its own
connections (the caller must not have a database connection open when it forks, so nothing of one is
shared). Where there is no safe fork (other systems than Linux; a process already running other
threads), or a single core, the function runs in this process when the result is asked for: the
outcome is the same, only later.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import threading
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


def can_fork() -> bool:
    """Whether a second process can be forked safely and has a core to run on. Linux only: macOS
    has fork, but system libraries there may not survive it (Python itself spawns there)."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and (os.cpu_count() or 1) > 1)


class Beside(Generic[T]):
    """`with Beside(fn, *args) as job: ...; job.result()`: `fn(*args)` runs in a second process from
    the start of the block; `result()` waits for its return value, or raises what it raised. Leaving
    the block ends the process if it is still running (the result was not wanted)."""

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._process: Any = None
        self._receiver: Any = None
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None

    def __enter__(self) -> "Beside[T]":
        if can_fork():
            context = multiprocessing.get_context("fork")
            self._receiver, sender = context.Pipe(duplex=False)
            self._process = context.Process(target=_run_and_send, args=(self._fn, self._args, sender),
                                            name="pooler-beside", daemon=True)
            self._process.start()
            sender.close()  # the child holds the only sending end: if it dies, `recv` ends
        return self

    def result(self) -> T:
        if not self._done:
            self._done = True
            if self._process is None:
                try:
                    self._value = self._fn(*self._args)
                except BaseException as exc:  # raised again below, as from the process
                    self._error = exc
            else:
                self._value, self._error = self._receive()
        if self._error is not None:
            raise self._error
        return self._value

    def _receive(self) -> tuple[Any, BaseException | None]:
        try:
            ok, body = self._receiver.recv()
        except EOFError:
            return None, RuntimeError(f"the second process ended without a result "
                                      f"(exit code {self._process.exitcode})")
        finally:
            self._close()
        return (body, None) if ok else (None, body)

    def _close(self) -> None:
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        if self._process is not None:
            if self._process.is_alive() and not self._done:
                self._process.terminate()
            self._process.join()

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._close()
            self._process = None


def _run_and_send(fn: Callable[..., Any], args: tuple[Any, ...], sender: Any) -> None:
    try:
        message: tuple[bool, Any] = (True, fn(*args))
    except BaseException as exc:  # noqa: BLE001 - the caller's to raise
        message = (False, exc)
    try:
        pickle.dumps(message[1])
    except Exception:  # a value or an exception that cannot be sent: its words can
        message = (False, RuntimeError(f"{type(message[1]).__name__}: {message[1]}"))
    try:
        sender.send(message)
    except OSError:
        pass  # the caller stopped waiting
    finally:
        sender.close()
