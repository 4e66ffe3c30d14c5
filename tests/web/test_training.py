"""The Training page: samples (filters, add, edit, delete, export), jobs, chart, adapters."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest

from convassist.server.ml_client import MLClient
from convassist.server.models import TrainingJob, TrainingStatus, utcnow
from tests.support.services import ML_TOKEN, free_port
from tests.web.conftest import Browser, text_of

pytestmark = pytest.mark.asyncio


@pytest.fixture
def dead_ml(app: Any) -> str:
    """Point the server at a port where nothing listens."""
    url = f"http://127.0.0.1:{free_port()}"
    app.state.ml_client = MLClient(url, timeout=5, token=ML_TOKEN)
    return url


async def _add(web: Browser, context: str, reply: str, quality: str = "1") -> str:
    resp = await web.htmx(
        "/training/samples",
        {"input_context": context, "expected_output": reply, "quality": quality},
    )
    assert resp.status_code == 200, resp.text
    return resp.text


def _sample_ids(html: str) -> list[str]:
    return re.findall(r'<li class="sample" id="sample-([0-9a-f-]{36})"', html)


async def test_empty_page_explains_where_samples_come_from(web: Browser, dead_ml: str) -> None:
    page = await web.get("/training")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "No samples yet." in text
    assert "No training yet." in text
    assert "After your first training job finishes" in text
    assert "Export JSONL" not in text
    assert 'hx-get="/training/adapters" hx-trigger="load' in page.text


async def test_add_filter_edit_delete_and_export(web: Browser) -> None:
    listing = await _add(web, "Them: are we still on for friday?", "yes! 7pm?")
    assert "1 sample" in text_of(listing)
    assert "Written by hand" in listing
    assert "Them: are we still on for friday?\nMe:" in listing  # the final Me: is added
    await _add(web, "Them: lunch?\nMe:", "sure", quality="0.4")
    bad = await web.htmx("/training/samples", {"input_context": "Them: hi", "expected_output": " "})
    assert bad.status_code == 422
    assert "Write both the conversation and your reply" in bad.text
    assert 'value="1"' in bad.text or "Them: hi" in bad.text

    page = await web.get("/training")
    assert len(_sample_ids(page.text)) == 2
    filtered = await web.get("/training/samples?source=manual&min_quality=0.5", htmx=True)
    assert len(_sample_ids(filtered.text)) == 1
    assert "1 sample match these filters" in text_of(filtered.text)
    assert 'href="/api/training/samples/export?source=manual&amp;minQuality=0.5"' in filtered.text
    nothing = await web.get("/training/samples?source=accepted", htmx=True)
    assert "No samples match these filters." in text_of(nothing.text)
    # Unknown filter values are ignored rather than failing.
    assert len(_sample_ids((await web.get("/training?source=bogus&min_quality=x")).text)) == 2

    exported = await web.get("/api/training/samples/export?source=manual&minQuality=0.5")
    records = [json.loads(line) for line in exported.text.splitlines()]
    assert [r["completion"] for r in records] == ["yes! 7pm?"]

    sample_id = _sample_ids(filtered.text)[0]
    form = await web.get(f"/training/samples/{sample_id}/edit", htmx=True)
    assert "Editing sample" in form.text
    assert 'name="expected_output"' in form.text
    saved = await web.htmx(
        f"/training/samples/{sample_id}",
        {
            "input_context": "Them: are we still on for friday?\nMe:",
            "expected_output": "yes!! 7pm",
            "quality": "0.9",
        },
    )
    assert saved.status_code == 200
    assert "yes!! 7pm" in saved.text
    assert "Quality 90%" in text_of(saved.text)
    invalid = await web.htmx(
        f"/training/samples/{sample_id}",
        {"input_context": "x", "expected_output": "y", "quality": "7"},
    )
    assert invalid.status_code == 422
    assert "quality is between 0 and 1" in invalid.text
    cancel = await web.get(f"/training/samples/{sample_id}", htmx=True)
    assert "yes!! 7pm" in cancel.text

    deleted = await web.htmx(
        f"/training/samples/{sample_id}/delete", {"source": "manual", "min_quality": "0.5"}
    )
    assert deleted.status_code == 200
    assert "Sample deleted." in deleted.headers["hx-trigger"]
    assert _sample_ids(deleted.text) == []
    assert "No samples match these filters." in text_of(deleted.text)
    assert len(_sample_ids((await web.get("/training")).text)) == 1


async def test_samples_page_by_cursor(web: Browser) -> None:
    for i in range(30):
        await _add(web, f"Them: question {i}", f"answer {i}")
    page = await web.get("/training")
    assert len(_sample_ids(page.text)) == 25
    more = re.search(r'hx-get="(/training/samples\?cursor=[^"]+)"', page.text)
    assert more
    rest = await web.get(more.group(1).replace("&amp;", "&"), htmx=True)
    assert len(_sample_ids(rest.text)) == 5
    assert "Show more samples" not in rest.text


async def test_starting_a_job_explains_what_is_wrong(web: Browser, dead_ml: str) -> None:
    form = (await web.get("/training")).text
    assert 'name="budget_minutes"' in form and 'value="10"' in form  # the default budget
    bad = await web.htmx("/training/jobs", {"epochs": "50", "learning_rate": "0.0002"})
    assert bad.status_code == 422
    assert "epochs are empty (automatic) or 1 to 20" in bad.text
    assert 'value="50"' in bad.text
    for budget in ("0.5", "241", "soon"):
        short = await web.htmx("/training/jobs", {"budget_minutes": budget})
        assert short.status_code == 422
        assert "The time budget is 1 to 240 minutes" in short.text
        assert f'value="{budget}"' in short.text
    resp = await web.htmx("/training/jobs", {"epochs": "1", "learning_rate": "0.0002"})
    assert resp.status_code == 503
    assert f"The ML service is not reachable at {dead_ml}." in resp.text
    assert "No training yet." in text_of((await web.get("/training/jobs", htmx=True)).text)

    await _add(web, "Them: hi", "hey you")
    down = await web.htmx(
        "/training/jobs",
        {"epochs": "1", "learning_rate": "0.0002", "include_history": "true"},
    )
    assert down.status_code == 503
    assert f"The ML service is not reachable at {dead_ml}." in down.text
    assert "checked" in down.text  # the form keeps what was entered
    history = await web.get("/training/jobs", htmx=True)
    assert 'id="perplexity-chart"' in history.text and 'hx-swap-oob="true"' in history.text


async def test_job_history_chart_and_live_rows(app: Any, web: Browser, dead_ml: str) -> None:
    now = utcnow()
    async with app.state.sessionmaker() as session:
        for i, (before, after) in enumerate([(31.2, 24.8), (24.9, 19.5)]):
            session.add(
                TrainingJob(
                    base_model="smollm2-135m-instruct",
                    status=TrainingStatus.COMPLETED,
                    progress=100,
                    epochs=2,
                    learning_rate=2e-4,
                    sample_count=120 + i,
                    metrics={"basePerplexity": before, "adapterPerplexity": after},
                    adapter_id=f"lora-{i}",
                    created_at=now - timedelta(hours=3 - i),
                    started_at=now - timedelta(hours=3 - i),
                    completed_at=now - timedelta(hours=3 - i) + timedelta(minutes=7, seconds=5),
                )
            )
        running = TrainingJob(
            base_model="smollm2-135m-instruct",
            status=TrainingStatus.TRAINING,
            progress=42,
            epochs=1,
            learning_rate=1e-4,
            sample_count=9,
            metrics={},
            ml_job_id=str(uuid.uuid4()),
            started_at=now - timedelta(seconds=30),
        )
        session.add(running)
        session.add(
            TrainingJob(
                base_model="smollm2-135m-instruct",
                status=TrainingStatus.FAILED,
                epochs=1,
                learning_rate=1e-4,
                sample_count=3,
                metrics={},
                error="Out of memory while loading the model.",
                created_at=now - timedelta(days=2),
            )
        )
        await session.commit()
    page = await web.get("/training")
    html = page.text
    text = text_of(html)
    assert '<svg viewBox="0 0 640 276" role="img"' in html
    assert html.count('class="chart-before"') == 2
    assert html.count('class="chart-after"') == 2
    assert "31.2" in text and "19.5" in text
    assert "-21%" in text  # 24.9 → 19.5
    assert "Perplexity 31.2 → 24.8" in text
    assert "Took 7 min 5 s" in text
    assert '<progress max="100" value="42"' in html
    assert "Running for" in text
    assert "Failed" in text and "Out of memory while loading the model." in text
    # The running row polls itself (`data-poll`: paused while a dialog is open, see app.js);
    # while the ML service is down it stays as it was.
    assert f'data-poll hx-get="/training/jobs/{running.id}" hx-trigger="every 2s"' in html
    row = await web.get(f"/training/jobs/{running.id}", htmx=True)
    assert 'value="42"' in row.text
    assert "hx-trigger" not in row.headers


async def test_adapters_panel_explains_an_unreachable_ml_service(
    web: Browser, dead_ml: str
) -> None:
    panel = await web.get("/training/adapters", htmx=True)
    assert panel.status_code == 200
    assert f"The ML service is not reachable at {dead_ml}." in panel.text


@pytest.mark.slow
async def test_no_samples_is_explained_in_the_owners_words(
    app: Any, web: Browser, ml_service_url: str
) -> None:
    app.state.ml_client = MLClient(ml_service_url, timeout=30, token=ML_TOKEN)
    resp = await web.htmx("/training/jobs", {"epochs": "1", "learning_rate": "0.0002"})
    assert resp.status_code == 422
    assert "There is nothing to learn from yet." in resp.text
    assert "Also learn from my past replies" in resp.text
    panel = await web.get("/training/adapters", htmx=True)
    assert "No adapters yet." in text_of(panel.text)


async def test_a_cancelled_job_is_shown_as_cancelled_not_as_an_error(
    app: Any, web: Browser, dead_ml: str
) -> None:
    async with app.state.sessionmaker() as session:
        job = TrainingJob(
            base_model="smollm2-135m-instruct",
            status=TrainingStatus.CANCELLED,
            progress=30,
            epochs=1,
            learning_rate=1e-4,
            sample_count=5,
            metrics={},
            error="The job was cancelled.",  # what the ML service records
            completed_at=utcnow(),
        )
        session.add(job)
        await session.commit()
    row = await web.get(f"/training/jobs/{job.id}", htmx=True)
    assert row.status_code == 200
    assert '<span class="badge">Cancelled</span>' in row.text  # the neutral badge
    assert "Stopped before it finished: no adapter was made." in text_of(row.text)
    assert "alert-error" not in row.text and "badge-danger" not in row.text
    assert "hx-get" not in row.text  # a finished row no longer polls
