from __future__ import annotations

from datetime import datetime

from pydantic import Field

from convassist.core.schemas import APIModel, RequestModel


class LoginRequest(RequestModel):
    password: str = Field(min_length=1, max_length=1024)


class SetupRequest(RequestModel):
    """First run: the one-time setup code the server printed, and the owner password."""

    code: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class LoginResponse(APIModel):
    token: str
    expires_at: datetime
    csrf_token: str


class SessionInfo(APIModel):
    authenticated: bool
