"""Full-text search over message text: the one place with backend-specific search SQL.

The owner's query is cut into words (runs of letters and digits); every word must match and
the last one also matches as a prefix (type-ahead). Words go into the FTS5 or tsquery
syntax quoted, so quotes, operators and other punctuation in the query are only separators,
and a query without words searches no messages. Matching ignores case and diacritics and
does not stem. The indexes come from migration 0004: SQLite's FTS5 table `message_search_fts`
(rowids mapped to messages by `message_search`, both kept by triggers) and PostgreSQL's
expression GIN index `ix_messages_text_search`, which only covers searchable messages (text,
not unsent, not a reaction), the condition repeated here so the planner can use it.
"""

from __future__ import annotations

import re

from sqlalchemy import (
    ColumnClause,
    Integer,
    Subquery,
    Uuid,
    column,
    func,
    literal_column,
    not_,
    select,
    table,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import distinct_on

from convassist.server.model_base import UTCDateTime
from convassist.server.models import Message

WORD = re.compile(r"[^\W_]+")
MAX_WORDS = 8
MIN_PREFIX = 3
"""A last word shorter than this matches whole words only: a shorter prefix matches a large
part of all messages (and finds nothing useful), which makes type-ahead slow."""

MESSAGE_SEARCH = table(
    "message_search",
    column("id", Integer),
    column("message_id", Uuid),
    column("conversation_id", Uuid),
    column("sent_at", UTCDateTime()),
)
FTS = table("message_search_fts", column("rowid", Integer))
CONFIG: ColumnClause[str] = literal_column("'convassist_search'")
EMPTY: ColumnClause[str] = literal_column("''")


def words(q: str) -> list[str]:
    """The query's words, in order (at most `MAX_WORDS`)."""
    return WORD.findall(q)[:MAX_WORDS]


def _sqlite(found: list[str]) -> Subquery:
    *whole, last = (f'"{word}"' for word in found)
    prefix = "*" if len(found[-1]) >= MIN_PREFIX else ""
    match = " AND ".join([*whole, last + prefix])
    # SQLite takes the bare columns from the row that has the max(): the newest match.
    return (
        select(
            MESSAGE_SEARCH.c.conversation_id,
            MESSAGE_SEARCH.c.message_id,
            func.max(MESSAGE_SEARCH.c.sent_at).label("sent_at"),
        )
        .select_from(FTS.join(MESSAGE_SEARCH, MESSAGE_SEARCH.c.id == FTS.c.rowid))
        .where(sql_text("message_search_fts MATCH :match").bindparams(match=match))
        .group_by(MESSAGE_SEARCH.c.conversation_id)
        .subquery("message_matches")
    )


def _postgresql(found: list[str]) -> Subquery:
    *whole, last = (f"'{word}'" for word in found)
    prefix = ":*" if len(found[-1]) >= MIN_PREFIX else ""
    query = func.to_tsquery(CONFIG, " & ".join([*whole, last + prefix]))
    vector = func.to_tsvector(CONFIG, func.coalesce(Message.text, EMPTY))
    return (
        select(Message.conversation_id, Message.id.label("message_id"), Message.sent_at)
        .ext(distinct_on(Message.conversation_id))
        .where(
            not_(Message.is_unsent),
            Message.message_type != literal_column("'reaction'"),
            func.coalesce(Message.text, EMPTY) != EMPTY,
            vector.bool_op("@@")(query),
        )
        .order_by(Message.conversation_id, Message.sent_at.desc(), Message.id.desc())
        .subquery("message_matches")
    )


def newest_matches(dialect: str, q: str) -> Subquery | None:
    """Each conversation's newest searchable message matching `q`, as columns
    `conversation_id`, `message_id`, `sent_at`; None when `q` has no words."""
    found = words(q)
    if not found:
        return None
    return _postgresql(found) if dialect == "postgresql" else _sqlite(found)
