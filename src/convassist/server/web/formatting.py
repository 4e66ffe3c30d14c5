"""Dates, times and numbers the way a person reads them, in the viewer's own time zone.

The browser stores its IANA time zone in the `convassist_tz` cookie (see static/app.js);
until it has, times are shown in UTC. The clock is 12-hour for American English
(`Accept-Language: en-US`, or plain `en`) and 24-hour otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request

TZ_COOKIE = "convassist_tz"
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _zone(cookie: str | None) -> tzinfo:
    name = unquote(cookie or "")
    if not name or len(name) > 64:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _prefers_12_hour(accept_language: str) -> bool:
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip().lower()
    return first in ("en-us", "en")


@dataclass(frozen=True, slots=True)
class Clock:
    """Formats timestamps for one viewer (their zone, their clock, one `now` per page)."""

    zone: tzinfo
    hour12: bool
    now: datetime

    @classmethod
    def for_request(cls, request: Request) -> Clock:
        return cls(
            zone=_zone(request.cookies.get(TZ_COOKIE)),
            hour12=_prefers_12_hour(request.headers.get("accept-language", "")),
            now=datetime.now(UTC),
        )

    def local(self, value: datetime) -> datetime:
        return value.astimezone(self.zone)

    def day_key(self, value: datetime) -> str:
        """The local calendar day, for grouping (`2026-11-20`)."""
        return self.local(value).date().isoformat()

    def time(self, value: datetime) -> str:
        """`9:41 AM` or `09:41`."""
        local = self.local(value)
        if self.hour12:
            return f"{local.hour % 12 or 12}:{local.minute:02d} {'AM' if local.hour < 12 else 'PM'}"
        return f"{local.hour:02d}:{local.minute:02d}"

    def day(self, value: datetime) -> str:
        """`Today`, `Yesterday`, a weekday this week, `Mon 3 Nov`, or `3 Nov 2025`."""
        day = self.local(value).date()
        today = self.local(self.now).date()
        delta = (today - day).days
        if delta == 0:
            return "Today"
        if delta == 1:
            return "Yesterday"
        if 1 < delta < 7:
            return _WEEKDAYS[day.weekday()]
        return _short_date(day, with_year=day.year != today.year)

    def stamp(self, value: datetime) -> str:
        """Day and time: `Today 9:41 AM`."""
        return f"{self.day(value)} {self.time(value)}"

    def full(self, value: datetime) -> str:
        """Unambiguous, for tooltips: `Friday 20 Nov 2026, 9:41 AM`."""
        local = self.local(value)
        return (
            f"{_WEEKDAYS[local.weekday()]} {_short_date(local.date(), with_year=True)}, "
            f"{self.time(value)}"
        )

    def remaining(self, value: datetime) -> str:
        """Time left until `value` as `m:ss` (`0:00` once past)."""
        seconds = max(0, int((value - self.now).total_seconds()))
        return f"{seconds // 60}:{seconds % 60:02d}"

    def ago(self, value: datetime | None) -> str:
        """`just now`, `5 min ago`, `3 h ago`, `Yesterday`, then the date."""
        if value is None:
            return "never"
        seconds = (self.now - value).total_seconds()
        if seconds < 60:
            return "just now"
        if seconds < 3600:
            return f"{int(seconds // 60)} min ago"
        if seconds < 6 * 3600 or self.day(value) == "Today":
            return f"{int(seconds // 3600)} h ago"
        return self.day(value)


def _short_date(day: date, *, with_year: bool) -> str:
    text = f"{day.day} {_MONTHS[day.month - 1]}"
    return f"{text} {day.year}" if with_year else f"{_WEEKDAYS[day.weekday()][:3]} {text}"


def iso(value: datetime) -> str:
    """Machine-readable, for `<time datetime>` and countdowns."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """`42 s`, `3 min 12 s`, `1 h 5 min`; empty when it never started."""
    if start is None:
        return ""
    seconds = max(0, int(((end or now) - start) / timedelta(seconds=1)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def count(value: int, singular: str, plural: str | None = None) -> str:
    """`1 message`, `12,480 messages`."""
    word = singular if value == 1 else (plural or f"{singular}s")
    return f"{value:,} {word}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100)}%"
