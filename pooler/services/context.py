"""What every service call needs: where the ledger is, who is acting, and what time it is."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pooler.store.urls import shown_db

DEFAULT_DB = "./pooler.db"


def default_actor() -> str:
    """`POOLER_ACTOR`, else user@host: who the journal says made a change."""
    actor = os.environ.get("POOLER_ACTOR")
    if actor:
        return actor  # (checked where an entry is written: `pooler.store.ledger.check_actor`)
    import getpass  # here, not above: `pooler --help` needs no actor
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers; the journal still needs one
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Context:
    """The ledger location (a path or SQLAlchemy URL), the actor and an injectable clock."""

    db: str = DEFAULT_DB
    actor: str = field(default_factory=default_actor)
    clock: Callable[[], datetime] = utc_now

    @property
    def url(self) -> str:
        return db_url(self.db)

    @property
    def shown_db(self) -> str:
        """The ledger as messages and screens name it (a URL's password hidden)."""
        return shown_db(self.db)


def db_url(db: str) -> str:
    """An SQLAlchemy URL for `db`: URLs pass through, paths become `sqlite:///<absolute path>`."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"
