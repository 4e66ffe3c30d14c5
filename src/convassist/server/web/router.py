"""The web UI's routes: pages at `/`, `/login`, `/devices`, `/conversations`, `/training`,
`/status`, and the HTMX fragments they load. Not part of the JSON API's schema."""

from __future__ import annotations

from fastapi import APIRouter

from convassist.server.web import (
    adapters,
    auth,
    consent,
    conversations,
    devices,
    inbox,
    online,
    samples,
    setup,
    status,
    suggestions,
    training,
)

router = APIRouter(include_in_schema=False)
for module in (
    inbox,
    auth,
    setup,
    devices,
    conversations,
    consent,
    suggestions,
    training,
    samples,
    adapters,
    online,
    status,
):
    router.include_router(module.router)
