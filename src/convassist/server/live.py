"""A row as the ML service sees it now, without writing it.

A GET shows active rows (a `generating` suggestion, a `queued` or `training` job) with the
ML service's live state laid over a transient copy of the row; the row itself is persisted
only by the reconciler (`server/reconciler.py`) and by the POST handlers that act on it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import inspect

from convassist.server.models import Base

Row = TypeVar("Row", bound=Base)


def transient_copy(row: Row) -> Row:
    """The row's column values in a new object that belongs to no session."""
    columns = inspect(type(row)).column_attrs
    return type(row)(**{column.key: getattr(row, column.key) for column in columns})


def changed_values(before: Row, after: Row) -> dict[str, Any]:
    """The columns whose values differ between a row and its updated copy."""
    columns = inspect(type(before)).column_attrs
    return {
        column.key: getattr(after, column.key)
        for column in columns
        if getattr(after, column.key) != getattr(before, column.key)
    }
