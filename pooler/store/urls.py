"""How a `--db` value is shown: without SQLAlchemy, for messages and screens that start fast."""

from __future__ import annotations

import re


def shown_db(db: str) -> str:
    """`db` as messages and screens show it: a URL's password as `***` (review: `init` and the
    dashboard printed it). The password is everything between the user's `:` and the last `@`, so a
    password holding an unescaped `@` or `/` is hidden whole as well."""
    scheme, sep, rest = db.partition("://")
    if not sep or scheme.startswith("sqlite"):  # (a file path may hold ":" and "@")
        return db
    if "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{host}"
    # and one given as a query parameter (`?password=...`, `sslpassword=`: review)
    return f"{scheme}://" + _SECRET_PARAM.sub(lambda m: m.group(1) + "***", rest)


_SECRET_PARAM = re.compile(r"([?&](?:ssl)?password=)[^&]*", re.IGNORECASE)
