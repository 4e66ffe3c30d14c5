"""The Training page's online measures: loaded into the page, empty state, charts per adapter
with a table of the same numbers, range buttons, and sign-in required."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from convassist.server.models import OutboxStatus, ResponseStatus, utcnow
from tests.support.measures import LORA, Rows
from tests.web.conftest import Browser, text_of


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The numbers are tested on both backends in tests/server; the page on SQLite."""
    return sqlite_url


async def test_the_page_loads_the_section_and_it_starts_empty(web: Browser, app: Any) -> None:
    page = await web.get("/training")
    assert 'hx-get="/training/online" hx-trigger="load"' in page.text
    async with app.state.sessionmaker() as session:
        rows = Rows(session)
        rows.message(utcnow() - timedelta(hours=2))
        await rows.save()
    panel = await web.get("/training/online", htmx=True)
    assert panel.status_code == 200
    text = text_of(panel.text)
    assert "No suggestions yet." in text
    assert "1 message arrived in this period and none got a suggestion." in text
    assert "<svg" not in panel.text
    assert "How these are measured" in text
    assert 'aria-pressed="true" hx-get="/training/online?days=30"' in panel.text


async def test_charts_per_adapter_and_the_table(web: Browser, app: Any) -> None:
    midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    async with app.state.sessionmaker() as session:
        rows = Rows(session)
        # Two days ago, the base model; today (any hour: until tomorrow counts), lora-one.
        first = rows.message(midnight - timedelta(days=2) + timedelta(hours=9))
        rows.suggestion(
            first, ResponseStatus.ACCEPTED, outbox=(OutboxStatus.SENT, 1, "Sounds good!!")
        )
        second = rows.message(midnight + timedelta(hours=1))
        rows.suggestion(
            second, ResponseStatus.EDITED, version=LORA, chosen=0, edited="See you at 8"
        )
        rows.suggestion(rows.message(midnight + timedelta(hours=2)), version=LORA, replied=True)
        rows.message(midnight + timedelta(hours=3))
        await rows.save()
    panel = await web.get("/training/online?days=7", htmx=True)
    assert panel.status_code == 200
    text = text_of(panel.text)
    assert "Messages with suggestions 75% 3 of 4 messages" in text
    assert "Suggestions used 67% 2 of 3 suggestions · slot 1 33% · slot 2 33% · slot 3 0%" in text
    assert "Characters edited 1.5 median mean 1.5" in text
    assert "Answered from the phone instead 1 of 1 not used" in text
    assert text.count("All models") >= 2 and "base model" in text and "lora-one" in text
    assert panel.text.count('role="img"') == 4
    for chart in ("coverage-chart", "usage-chart", "slot-chart", "edit-chart"):
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in panel.text
    assert re.search(r'<g class="trend-line series-0">\s*<polyline', panel.text)
    assert "<title>lora-one, " in panel.text
    table = panel.text[panel.text.index("<table") : panel.text.index("</table>")]
    cells = [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    today, before = (f"{d.day} {d:%b}" for d in (midnight, midnight - timedelta(days=2)))
    assert f"{today} All models 3 2 (67%) 2 50% 0% 0% 50% 1 1 1.0 8%" in cells
    assert f"{today} lora-one 3 2 (67%) 2 50% 0% 0% 50% 1 1 1.0 8%" in cells
    assert f"{before} base model 1 1 (100%) 1 0% 100% 0% 0% 0 2 2.0 15%" in cells
    assert not any(cell.startswith(f"{today} base model") for cell in cells)
    week = await web.get("/training/online?days=90", htmx=True)
    assert "Numbers by week" in week.text and "Week of" in week.text
    assert 'aria-pressed="true" hx-get="/training/online?days=90"' in week.text
    fallback = await web.get("/training/online?days=12", htmx=True)
    assert 'aria-pressed="true" hx-get="/training/online?days=30"' in fallback.text


async def test_sign_in_is_required(browser: Browser) -> None:
    resp = await browser.get("/training/online?days=7")
    assert resp.status_code == 303
    assert resp.headers["location"].startswith("/login?next=")
    htmx = await browser.get("/training/online", htmx=True)
    assert htmx.status_code == 401 and "HX-Redirect" in htmx.headers
    assert "How suggestions are used" not in resp.text + htmx.text
