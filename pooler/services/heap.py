"""Python's cycle collector paused around the big reads and writes (a million usage lines).

Those build millions of short-lived tuples and a few large structures that live to the end (totals
per project and pool, a replayed registry); none holds a reference cycle. The collector would walk
the growing heap again and again and free nothing: about a tenth of an import's time and of an
audit's. Paused, it still runs afterwards, as usual, on whatever is left.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector off inside the block (a no-op when it is off already), on again after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
