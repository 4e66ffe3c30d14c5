"""What a check answers, and running a list of checks without letting one break the rest."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from convassist.agent.settings import AgentSettings
from convassist.core.settings import ServerSettings
from convassist.ml.settings import MLSettings


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but not set up yet or not as it should be
    FAIL = "fail"
    SKIP = "skip"  # not applicable here


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    fix: str | None = None


def ok(summary: str) -> Outcome:
    return Outcome(Status.OK, summary)


def warn(summary: str, fix: str) -> Outcome:
    return Outcome(Status.WARN, summary, fix)


def fail(summary: str, fix: str) -> Outcome:
    return Outcome(Status.FAIL, summary, fix)


def skip(summary: str) -> Outcome:
    return Outcome(Status.SKIP, summary)


@dataclass
class Context:
    """The settings the checks read; the agent's only on a Mac (they are built lazily)."""

    server: ServerSettings
    ml: MLSettings
    platform: str = field(default=sys.platform)

    @cached_property
    def agent(self) -> AgentSettings:
        return AgentSettings()


@dataclass(frozen=True)
class Check:
    id: str
    name: str
    run: Callable[[Context], Outcome]


@dataclass(frozen=True)
class Result:
    check: Check
    outcome: Outcome

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.check.id,
            "name": self.check.name,
            "status": self.outcome.status.value,
            "summary": self.outcome.summary,
            "fix": self.outcome.fix,
        }


def run_checks(checks: Sequence[Check], context: Context) -> list[Result]:
    """Every check's outcome; a check that raises fails with the error's type and message."""
    results = []
    for check in checks:
        try:
            outcome = check.run(context)
        except Exception as exc:
            outcome = fail(
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "Report this with the output of `convassist doctor --json`.",
            )
        results.append(Result(check, outcome))
    return results


def failed(results: Sequence[Result]) -> bool:
    return any(result.outcome.status is Status.FAIL for result in results)
