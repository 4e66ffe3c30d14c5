"""When the owner's stock replies must be tallied again (`responses/own.py` caches them).

A unit of work that changes what the tally reads calls `note_change(session)`: the owner's
messages (sync), the consent switches, deleting conversations or contacts. The database's
revision moves on when that transaction commits, not before, so a tally read just before
the commit is never kept as current. A rolled-back change moves nothing.

Revisions are per database engine, in this process. Writers in another process (the
`convassist demo` command) are caught by the cache's age limit instead.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_CHANGED = "convassist.own_replies_changed"
_revisions: WeakKeyDictionary[Engine, int] = WeakKeyDictionary()


def note_change(session: AsyncSession) -> None:
    """This transaction changes what the owner's stock replies are tallied from."""
    session.info[_CHANGED] = True


def changing(session: AsyncSession) -> bool:
    """Whether this session's open transaction has such a change (not yet committed)."""
    return bool(session.info.get(_CHANGED))


def revision(engine: Engine) -> int:
    """How many committed changes this database has seen (in this process)."""
    return _revisions.get(engine, 0)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop(_CHANGED, False):
        engine = session.get_bind().engine
        _revisions[engine] = revision(engine) + 1


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_CHANGED, None)
