"""message search: full-text indexes over message text (SQLite FTS5, PostgreSQL GIN)

A message is searchable when it has text, is not unsent and is not a reaction (a reaction
quotes the message it reacts to). Words match case- and diacritics-insensitively, without
stemming (messages are multilingual).

SQLite: `messages` has a UUID primary key, so its rowid is no INTEGER PRIMARY KEY alias and
VACUUM or a batch-mode table rebuild may renumber it; an FTS5 table keyed on it (external
content) would then silently point at the wrong messages. So the FTS5 table keeps its own
copy of the text (contentful) under its own rowid, and `message_search` maps that rowid
(an INTEGER PRIMARY KEY, which VACUUM keeps) to the message id, conversation and sent_at: a
search never joins `messages` until the page of results is known, and triggers find a
message's entry through the unique `message_id`. Triggers on `messages` (insert, update of
the indexed fields, delete, including foreign-key cascades) keep both tables in step.
Tokenizer: unicode61 with remove_diacritics 2, a prefix index of 3 characters for type-ahead
(a search's last word matches as a prefix from 3 characters on). A future migration that
rebuilds `messages` on SQLite (batch mode) drops these triggers with the old table and must
create them again (`tests/server/test_search.py` checks that they exist at head).

PostgreSQL: an expression GIN index on `to_tsvector('convassist_search', coalesce(text, ''))`
for searchable messages. `convassist_search` is the 'simple' configuration (lower-casing, no
stemming, no stop words) with the `unaccent` dictionary in front; no triggers needed. The
`unaccent` extension (contrib, trusted) is left installed on downgrade.

None of these objects is in the models; migrations/env.py keeps them out of the drift check.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 17:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _searchable(row: str = "") -> str:
    """The condition for a searchable message, on the columns of `row` (unqualified if '')."""
    at = f"{row}." if row else ""
    return f"NOT {at}is_unsent AND {at}message_type <> 'reaction' AND coalesce({at}text, '') <> ''"


_FORGET = """
    DELETE FROM message_search_fts
        WHERE rowid = (SELECT id FROM message_search WHERE message_id = old.id);
    DELETE FROM message_search WHERE message_id = old.id;
"""
_INDEX_NEW = f"""
    INSERT INTO message_search (message_id, conversation_id, sent_at)
        SELECT new.id, new.conversation_id, new.sent_at WHERE {_searchable("new")};
    INSERT INTO message_search_fts (rowid, text)
        SELECT id, new.text FROM message_search WHERE message_id = new.id;
"""  # noqa: S608 (constant SQL)

SQLITE_UPGRADE = (
    """CREATE TABLE message_search (
        id INTEGER PRIMARY KEY,
        message_id CHAR(32) NOT NULL UNIQUE,
        conversation_id CHAR(32) NOT NULL,
        sent_at DATETIME NOT NULL
    )""",
    """CREATE VIRTUAL TABLE message_search_fts USING fts5(
        text, tokenize = 'unicode61 remove_diacritics 2', prefix = '3'
    )""",
    f"CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN {_INDEX_NEW} END",
    f"""CREATE TRIGGER messages_search_update
        AFTER UPDATE OF text, is_unsent, message_type, sent_at, conversation_id ON messages
        BEGIN {_FORGET} {_INDEX_NEW} END""",
    f"CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN {_FORGET} END",
    f"""INSERT INTO message_search (message_id, conversation_id, sent_at)
        SELECT id, conversation_id, sent_at FROM messages m
        WHERE {_searchable("m")}""",  # noqa: S608 (constant SQL)
    """INSERT INTO message_search_fts (rowid, text)
        SELECT s.id, m.text FROM message_search s JOIN messages m ON m.id = s.message_id""",
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER messages_search_delete",
    "DROP TRIGGER messages_search_update",
    "DROP TRIGGER messages_search_insert",
    "DROP TABLE message_search_fts",
    "DROP TABLE message_search",
)

WORD_TYPES = (
    "asciiword, word, numword, asciihword, hword, numhword, "
    "hword_asciipart, hword_part, hword_numpart"
)
POSTGRESQL_UPGRADE = (
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "CREATE TEXT SEARCH CONFIGURATION convassist_search (COPY = simple)",
    f"ALTER TEXT SEARCH CONFIGURATION convassist_search "
    f"ALTER MAPPING FOR {WORD_TYPES} WITH unaccent, simple",
    f"""CREATE INDEX ix_messages_text_search ON messages
        USING gin (to_tsvector('convassist_search', coalesce(text, '')))
        WHERE {_searchable()}""",
)
POSTGRESQL_DOWNGRADE = (
    "DROP INDEX ix_messages_text_search",
    "DROP TEXT SEARCH CONFIGURATION convassist_search",
)


def _run(sqlite: Sequence[str], postgresql: Sequence[str]) -> None:
    dialect = op.get_bind().dialect.name
    for statement in sqlite if dialect == "sqlite" else postgresql:
        op.execute(statement)


def upgrade() -> None:
    _run(SQLITE_UPGRADE, POSTGRESQL_UPGRADE)


def downgrade() -> None:
    _run(SQLITE_DOWNGRADE, POSTGRESQL_DOWNGRADE)
