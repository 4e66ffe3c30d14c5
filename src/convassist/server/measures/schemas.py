"""The online measures as the API answers them (`GET /api/training/online`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from convassist.core.schemas import APIModel


class SlotUse(APIModel):
    slot: int = Field(description="The candidate's position, 1 = the first suggestion shown.")
    used: int = Field(description="Suggestions where this candidate was the one used.")
    share: float | None = Field(description="`used` / `suggestions`; null without suggestions.")


class EditMeasures(APIModel):
    """Character edit distance between the candidate used and the text really sent."""

    count: int = Field(description="Used suggestions measured.")
    mean_distance: float | None
    median_distance: float | None
    mean_normalized: float | None = Field(description="Distance / length of the longer text.")
    median_normalized: float | None


class Measures(APIModel):
    incoming_messages: int = Field(description="Incoming messages (not reactions) in the period.")
    covered_messages: int = Field(description="Of those, messages with a completed suggestion.")
    coverage: float | None = Field(description="`coveredMessages` / `incomingMessages`.")
    suggestions: int = Field(description="Completed suggestions (shown to the owner).")
    used: int = Field(description="Suggestions whose candidate was sent or accepted/edited.")
    used_share: float | None
    slots: list[SlotUse]
    none_used: int
    none_share: float | None
    replied_instead: int = Field(description="Unused suggestions the owner answered by phone.")
    edits: EditMeasures


class Bucket(Measures):
    start: datetime = Field(description="Start of the day or week (UTC), inclusive.")
    end: datetime = Field(description="Its end, exclusive.")


class AdapterMeasures(APIModel):
    adapter_id: str | None = Field(description="The LoRA adapter; null for the base model.")
    label: str
    totals: Measures
    buckets: list[Bucket]


class OnlineMeasures(APIModel):
    since: datetime
    until: datetime
    bucket: Literal["day", "week"] = Field(description="Days up to 31 days, weeks beyond.")
    totals: Measures
    buckets: list[Bucket]
    adapters: list[AdapterMeasures] = Field(
        description="Per adapter (from the suggestions' modelVersion), base model first; "
        "`incomingMessages` is every incoming message, `coveredMessages` those whose first "
        "completed suggestion came from this adapter."
    )
