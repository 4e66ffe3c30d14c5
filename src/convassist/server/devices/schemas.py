from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from convassist.core.schemas import APIModel, RequestModel


class RegisterRequest(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    hardware_id: str = Field(min_length=1, max_length=200)
    platform: str = Field(min_length=1, max_length=50)
    os_version: str = Field(min_length=1, max_length=50)


class RegisterResponse(APIModel):
    device_id: uuid.UUID
    code: str
    expires_at: datetime
    interval: int = Field(description="Seconds the agent should wait between verify polls.")


class ApproveRequest(RequestModel):
    code: str = Field(pattern=r"^\s*\d{3}[\s-]?\d{3}\s*$", description="The 6-digit code.")

    @property
    def digits(self) -> str:
        return "".join(ch for ch in self.code if ch.isdigit())


class VerifyRequest(RequestModel):
    device_id: uuid.UUID
    code: str = Field(pattern=r"^\d{6}$")


class TokenResponse(APIModel):
    device_id: uuid.UUID
    token: str
    expires_at: datetime


class DeviceUpdate(RequestModel):
    may_send: bool = Field(description="Allow this device to send replies from the outbox.")


class DeviceOut(APIModel):
    id: uuid.UUID
    name: str
    hardware_id: str
    platform: str
    os_version: str
    status: str = Field(description="pending, approved, active, inactive or expired")
    verified: bool
    is_active: bool
    pending_name: str | None = Field(
        validation_alias="pending_registration",
        description="The name a re-registration asks for; applied when its code is approved.",
    )
    code_expires_at: datetime | None
    last_sync_at: datetime | None
    messages_synced: int
    may_send: bool = Field(description="Whether the owner allows it to send replies.")
    created_at: datetime
    updated_at: datetime
