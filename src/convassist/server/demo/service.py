"""Load and remove the demo: one Chit-Chat person's conversations, synced by a demo device.

Loading goes through the sync service, as the agent's batches do, from a dedicated device
(`DEMO_HARDWARE_ID`, active and verified, shown on the Devices page). Everything it makes
is marked: chat guids and message guids start with `DEMO_CHAT_PREFIX`, and the other
people's handles end with `DEMO_HANDLE_DOMAIN` (`.invalid` is never a real address).
Loading twice stores nothing twice (the sync upserts by guid). Removal deletes exactly those
conversations (with their messages, participants and suggestions), the training samples
made from them, the demo contacts and the demo device.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convassist.core.db import session_scope
from convassist.server.demo.corpus import Conversation, senders, sync_payload
from convassist.server.models import (
    Contact,
    Device,
    GeneratedResponse,
    Message,
    TrainingSample,
    utcnow,
)
from convassist.server.models import (
    Conversation as ConversationRow,
)
from convassist.server.responses.own_changes import note_change
from convassist.server.sync import service as sync
from convassist.server.sync.schemas import SyncContactsRequest, SyncMessagesRequest

DEMO_HARDWARE_ID = "convassist-demo-chitchat"
DEMO_DEVICE_NAME = "Demo: BYU Chit-Chat"
DEMO_CHAT_PREFIX = "chitchat-demo;-;"
DEMO_HANDLE_DOMAIN = "@chitchat.demo.invalid"
FIRST_NAMES = (
    "Alex", "Bailey", "Casey", "Dana", "Eli", "Frankie", "Gray", "Harper", "Indy", "Jordan",
    "Kai", "Logan", "Morgan", "Noa", "Oakley", "Parker", "Quinn", "Riley", "Sage", "Taylor",
    "Umi", "Val", "Wren", "Yael", "Zion",
)  # fmt: skip


@dataclass
class DemoTotals:
    conversations: int = 0
    inserted: int = 0
    unchanged: int = 0
    updated: int = 0


@dataclass(frozen=True)
class Removed:
    conversations: int
    messages: int
    samples: int
    contacts: int
    devices: int


def demo_handle(sender: str) -> str:
    return f"{sender}{DEMO_HANDLE_DOMAIN}"


def demo_name(sender: str) -> str:
    """A friendly, stable name for a corpus sender id (the corpus has no names)."""
    digest = int(uuid.UUID(sender).hex[:8], 16)
    return f"{FIRST_NAMES[digest % len(FIRST_NAMES)]} {sender[0].upper()}."


async def demo_device(session: AsyncSession) -> Device:
    """The demo's device, created active and verified the first time."""
    found = await session.scalar(select(Device).where(Device.hardware_id == DEMO_HARDWARE_ID))
    if found is not None:
        return found
    device = Device(
        name=DEMO_DEVICE_NAME,
        hardware_id=DEMO_HARDWARE_ID,
        platform="demo",
        os_version="chitchat-dataset",
        verified=True,
        is_active=True,
        approved_at=utcnow(),
    )
    session.add(device)
    await session.flush()
    return device


def _batches(payload: dict[str, Any], size: int) -> Iterator[SyncMessagesRequest]:
    messages = payload["messages"]
    for start in range(0, len(messages), size):
        yield SyncMessagesRequest.model_validate(
            {**payload, "messages": messages[start : start + size]}
        )


async def load(
    maker: async_sessionmaker[AsyncSession],
    conversations: list[tuple[str, Conversation]],
    me: str,
    *,
    max_batch: int,
    progress: Callable[[DemoTotals], None] = lambda _: None,
) -> DemoTotals:
    """Sync `conversations` (`me` as the owner) from the demo device, one transaction per
    batch as the sync API does; `progress` is called after each conversation."""
    others = sorted({s for _, c in conversations for s in senders(c)} - {me})
    async with session_scope(maker) as session:
        device = await demo_device(session)
        contacts = [{"appleId": demo_handle(s), "displayName": demo_name(s)} for s in others]
        for start in range(0, len(contacts), 500):
            chunk = SyncContactsRequest.model_validate({"contacts": contacts[start : start + 500]})
            await sync.sync_contacts(session, chunk)
    totals = DemoTotals()
    for conversation_id, conversation in conversations:
        payload = sync_payload(DEMO_CHAT_PREFIX + conversation_id, conversation, me, demo_handle)
        for batch in _batches(payload, max_batch):
            async with session_scope(maker) as session:
                result = await sync.sync_messages(session, device, batch, max_batch=max_batch)
            totals.inserted += result.inserted
            totals.unchanged += result.unchanged
            totals.updated += result.updated
        totals.conversations += 1
        progress(totals)
    return totals


async def remove(session: AsyncSession) -> Removed:
    """Delete the demo data and nothing else."""
    is_demo = ConversationRow.imessage_id.startswith(DEMO_CHAT_PREFIX, autoescape=True)
    demo_conversations = select(ConversationRow.id).where(is_demo)
    demo_messages = select(Message.id).where(Message.conversation_id.in_(demo_conversations))
    demo_responses = select(GeneratedResponse.id).where(
        GeneratedResponse.message_id.in_(demo_messages)
    )
    samples = await session.execute(
        delete(TrainingSample).where(
            or_(
                TrainingSample.conversation_id.in_(demo_conversations),
                TrainingSample.response_id.in_(demo_responses),
            )
        )
    )
    messages = await session.execute(
        delete(Message).where(Message.conversation_id.in_(demo_conversations))
    )
    note_change(session)
    conversations = await session.execute(delete(ConversationRow).where(is_demo))
    contacts = await session.execute(
        delete(Contact).where(Contact.apple_id.endswith(DEMO_HANDLE_DOMAIN, autoescape=True))
    )
    devices = await session.execute(delete(Device).where(Device.hardware_id == DEMO_HARDWARE_ID))
    return Removed(
        conversations=_count(conversations),
        messages=_count(messages),
        samples=_count(samples),
        contacts=_count(contacts),
        devices=_count(devices),
    )


def _count(result: Any) -> int:
    return int(result.rowcount or 0)
