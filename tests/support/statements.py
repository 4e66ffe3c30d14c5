"""The SQL an app sends, recorded for tests that count queries or look for writes."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event


@contextmanager
def sent_statements(app: Any, *, kinds: Collection[str] = ()) -> Iterator[list[str]]:
    """The statements the app's engine sends while the block runs; with `kinds` (such as
    "INSERT"), only those that start with one of them."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not kinds or statement.lstrip().split(None, 1)[0].upper() in kinds:
            seen.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
