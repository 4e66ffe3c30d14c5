"""structlog set-up shared by every process.

Console output in a terminal, JSON lines otherwise. A request id (bound per request by the
servers' middleware through contextvars) rides on every line. Never pass message text,
prompts or generated replies to a logger: log ids, counts and timings.

Exceptions are logged as their type, their cause's type and where they were raised, never
as a message or traceback: a database error's message carries the SQL parameters (message
text), and tracebacks can show local variables (`redact_exception`).
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import PurePath
from types import TracebackType
from typing import Any

import structlog

from convassist.core.settings import LogFormat


def configure_logging(level: str = "INFO", fmt: LogFormat = "auto", component: str = "") -> None:
    """Configure structlog; route the standard library loggers (uvicorn, alembic) through it."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if component:
        shared.append(_add_component(component))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: reconfiguring (tests, `convassist up` children) must reach every logger.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_exception,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log repeats what our request middleware logs (with the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # aiosqlite logs every statement with its parameters (message text) at DEBUG.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))


def _add_component(component: str) -> structlog.types.Processor:
    def processor(_: Any, __: str, event_dict: structlog.types.EventDict) -> Any:
        event_dict.setdefault("component", component)
        return event_dict

    return processor


def redact_exception(_: Any, __: str, event_dict: structlog.types.EventDict) -> Any:
    """Replace `exc_info` (any logger's, uvicorn's too) with `error_type`, `error_cause` and
    `error_location` (`convassist/…/file.py:line in function`): no message, no traceback."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("exception", None)
    error = _exception(exc_info)
    if error is not None:
        event_dict.setdefault("error_type", _type_name(error))
        cause = error.__cause__ or error.__context__
        if cause is not None:
            event_dict.setdefault("error_cause", _type_name(cause))
        if error.__traceback__ is not None:
            event_dict["error_location"] = _location(error.__traceback__)
    return event_dict


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        return exc_info[1] if isinstance(exc_info[1], BaseException) else None
    return sys.exc_info()[1] if exc_info else None


def _type_name(error: BaseException) -> str:
    cls = type(error)
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def _location(tb: TracebackType) -> str:
    """The innermost frame in this project's code (else the innermost frame)."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "convassist" in PurePath(f.filename).parts]
    frame = (ours or frames)[-1]
    parts = PurePath(frame.filename).parts
    start = max((i for i, part in enumerate(parts) if part == "convassist"), default=len(parts) - 1)
    path = "/".join(parts[start:])
    return f"{path}:{frame.lineno} in {frame.name}"


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
