"""The Training page's held-out measures per job, the activation gate's reason, switching an
adapter on anyway, rolling back, and each job's time-budget plan."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from convassist.server.ml_client import MLClient
from convassist.server.models import TrainingJob, TrainingStatus, utcnow
from tests.support.adapters import ml_service_with_adapters
from tests.support.services import ML_TOKEN, free_port
from tests.web.conftest import Browser, text_of

pytestmark = pytest.mark.asyncio

REASON = (
    "Usable in the top 3 for 30% of held-out replies, fewer than the 45% of the adapter "
    "it would replace."
)
QUALITY: dict[str, Any] = {
    "replies": 24,
    "owner": {"meanWords": 6.5, "lowercaseShare": 0.9},
    "base": {"usableTop3": 0.25, "chrf": 18.4, "meanWords": 14.0, "lowercaseShare": 0.1},
    "adapter": {"usableTop3": 0.3, "chrf": 27.9, "meanWords": 7.5, "lowercaseShare": 0.75},
    "active": {"usableTop3": 0.45, "chrf": 31.0, "meanWords": 6.0, "lowercaseShare": 0.8},
    "closerThanBase": 0.6,
}
GATED: dict[str, Any] = {"activate": False, "reason": REASON, "comparedWith": "lora-11111111"}
PLAN: dict[str, Any] = {
    "budgetSeconds": 1800,
    "epochs": 2,
    "reason": "2 epochs over 120 samples fit the 30-minute budget at 410 tokens/s.",
}
METRICS: dict[str, Any] = {
    "basePerplexity": 31.2,
    "adapterPerplexity": 24.8,
    "quality": QUALITY,
    "gate": GATED,
    "plan": PLAN,
    "budgetMinutes": 30.0,
    "withinBudget": True,
}


def _job(metrics: dict[str, Any], hours_ago: int, adapter: str | None) -> TrainingJob:
    created = utcnow() - timedelta(hours=hours_ago)
    return TrainingJob(
        base_model="smollm2-135m-instruct",
        status=TrainingStatus.COMPLETED,
        progress=100,
        epochs=2,
        learning_rate=2e-4,
        sample_count=120,
        metrics=metrics,
        adapter_id=adapter,
        created_at=created,
        started_at=created,
        completed_at=created + timedelta(minutes=9),
    )


def _rows(html: str) -> list[str]:
    body = html.split("<table>", 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


async def test_the_measures_and_the_gate_decision_of_each_job(app: Any, web: Browser) -> None:
    app.state.ml_client = MLClient(f"http://127.0.0.1:{free_port()}", timeout=5, token=ML_TOKEN)
    switched_on = {**METRICS, "gate": {"activate": True, "reason": "", "comparedWith": "base"}}
    async with app.state.sessionmaker() as session:
        session.add(_job(METRICS, 1, "lora-22222222"))
        session.add(
            _job({**switched_on, "quality": {**QUALITY, "active": None}}, 2, "lora-11111111")
        )
        # From before the held-out replies were scored: perplexity only.
        session.add(_job({"basePerplexity": 30.0, "adapterPerplexity": 28.5}, 3, "lora-00000000"))
        session.add(_job({"quality": "not a mapping", "gate": {"activate": "yes"}}, 4, None))
        await session.commit()
    page = await web.get("/training")
    assert page.status_code == 200
    html = page.text
    assert '<caption id="heldout-caption">Held-out measures by job, newest first</caption>' in html
    assert 'role="region" aria-labelledby="heldout-caption" tabindex="0"' in html
    assert html.count('<th scope="col">') == 10
    newest, older, oldest = _rows(html)  # the job with nothing readable has no row
    assert f'<td class="gate-cell"><strong>No</strong>: {REASON}</td>' in html
    assert "<code>lora-11111111</code>: 45% usable, chrF 31.0" in html
    for shown in (
        "lora-22222222",
        "31.2 → 24.8",
        "25% → 30%",
        "18.4 → 27.9",
        "60%",
        "6.5 / 7.5",
        "90% / 75%",
    ):
        assert shown in newest, (shown, newest)
    assert "Base model" in older and older.endswith("Yes")
    assert oldest.endswith("lora-00000000 30.0 → 28.5 — — — — — — —")
    # The job's time-budget plan, with the job's other facts.
    text = text_of(html)
    assert "Time budget 30 min" in text and "Within budget Yes" in text
    assert PLAN["reason"] in text
    assert "How these are measured" in text


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_switch_on_anyway_and_roll_back_in_one_click(
    app: Any, web: Browser, tmp_path: Path
) -> None:
    switched_on = {"gate": {"activate": True, "reason": "", "comparedWith": "base"}}
    metrics: list[dict[str, Any]] = [switched_on, METRICS]
    with ml_service_with_adapters(tmp_path, metrics) as (ml_url, (first, gated)):
        app.state.ml_client = MLClient(ml_url, timeout=60, token=ML_TOKEN)
        panel = (await web.get("/training/adapters", htmx=True)).text
        assert "Roll back" not in panel
        assert text_of(panel).count(REASON) == 1
        assert f'aria-label="Switch on anyway: adapter {gated}">Switch on anyway</button>' in panel
        assert f'aria-label="Use adapter {first}">Use this</button>' in panel

        nothing = await web.htmx("/training/adapters/rollback")
        assert nothing.status_code == 409
        assert "There is no previous adapter to roll back to" in nothing.text

        assert (await web.htmx(f"/training/adapters/{first}/activate")).status_code == 200
        anyway = await web.htmx(f"/training/adapters/{gated}/activate")
        assert f"Suggestions now use adapter {gated}." in anyway.headers["hx-trigger"]
        assert REASON not in anyway.text  # it is switched on now
        button = 'hx-post="/training/adapters/rollback" hx-target="#adapters"'
        assert f'<button type="button" class="button button-small button-secondary" {button}' in (
            anyway.text
        )
        assert f"Roll back to {first}" in text_of(anyway.text)

        refused = await web.client.post(
            "/training/adapters/rollback", headers={"HX-Request": "true"}
        )
        assert refused.status_code == 403

        back = await web.htmx("/training/adapters/rollback")
        assert back.status_code == 200, back.text
        assert f"Rolled back: suggestions now use adapter {first}." in back.headers["hx-trigger"]
        active = rf'<li class="adapter is-active">\s*<div>\s*<code class="adapter-id">{first}<'
        assert re.search(active, back.text)
        assert f"Roll back to {gated}" in text_of(back.text)
        assert text_of(back.text).count(REASON) == 1  # off again: the reason shows again
