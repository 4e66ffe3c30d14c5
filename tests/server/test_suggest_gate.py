"""The suggestion gate's rules, one by one, and its switches (no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from convassist.core.settings import ServerSettings
from convassist.server.models import Direction, MessageType
from convassist.server.suggest.gate import Skip, SuggestPolicy, check

POLICY = SuggestPolicy()


@dataclass(frozen=True)
class Msg:
    text: str | None = "are you coming tonight?"
    sender_id: str | None = "+15551230001"
    direction: Direction = Direction.INCOMING
    message_type: MessageType = MessageType.TEXT
    is_unsent: bool = False


def verdict(message: Msg, *, group: bool = False, participates: bool = False, **policy: object):
    return check(
        message,
        is_group=group,
        owner_participates=participates,
        policy=SuggestPolicy(**policy) if policy else POLICY,  # type: ignore[arg-type]
    )


def test_an_ordinary_incoming_message_passes() -> None:
    assert verdict(Msg()) is None
    assert verdict(Msg(sender_id="friend@icloud.com")) is None
    assert verdict(Msg(sender_id="+44 (20) 7946-0958")) is None
    assert verdict(Msg(sender_id=None)) is None  # unknown sender: judged by the text


def test_outgoing_unsent_and_events_are_skipped() -> None:
    assert verdict(Msg(direction=Direction.OUTGOING, sender_id=None)) is Skip.OUTGOING
    assert verdict(Msg(is_unsent=True, text=None)) is Skip.UNSENT
    assert verdict(Msg(message_type=MessageType.OTHER, text=None)) is Skip.EVENT


def test_reactions_are_skipped() -> None:
    assert verdict(Msg(message_type=MessageType.REACTION, text="Loved “hi”")) is Skip.REACTION


@pytest.mark.parametrize(
    "text",
    [
        "Liked “are you coming tonight?”",
        'Loved "see you soon"',
        "Emphasized “call me”",
        "Emphasised \u2018call me\u2019",
        "Laughed at “lol no”",
        "Disliked “monday again”",
        "Questioned “Really?”",
        "Liked an image",
        "Laughed at a video",
        "Removed a like from “ok”",
        "Removed a heart from “ok”",
        "Reacted 😂 to “that was wild”",
        "Reacted with a sticker to “Like I wonder if the stickers can …”",
    ],
)
def test_text_tapbacks_are_skipped(text: str) -> None:
    assert verdict(Msg(text=text)) is Skip.TAPBACK


@pytest.mark.parametrize(
    "text",
    ["Liked it a lot, thanks", "I loved “Dune”, you?", "Questioned my life choices today"],
)
def test_sentences_that_start_like_a_tapback_pass(text: str) -> None:
    assert verdict(Msg(text=text)) is None


def test_attachments_without_a_caption_are_skipped() -> None:
    assert verdict(Msg(message_type=MessageType.ATTACHMENT, text=None)) is Skip.ATTACHMENT
    assert verdict(Msg(message_type=MessageType.ATTACHMENT, text="  ")) is Skip.ATTACHMENT
    assert verdict(Msg(message_type=MessageType.STICKER, text="ok")) is Skip.ATTACHMENT
    assert verdict(Msg(message_type=MessageType.APP, text="Apple Pay")) is Skip.ATTACHMENT
    assert verdict(Msg(message_type=MessageType.ATTACHMENT, text="look at this!")) is None
    assert verdict(Msg(text="")) is Skip.EMPTY
    assert verdict(Msg(text=None)) is Skip.EMPTY


@pytest.mark.parametrize(
    "text",
    [
        "000123 is your security code. Don't share your code.",
        "G-482913 is your Google verification code.",
        "Your Uber code: 4821. Never share this code.",
        "Your one-time passcode is 58213390",
        "Use 731 204 to sign in. Do not share it with anyone",
        "OTP for your transaction is 889123",
        "Tu código de verificación es 552901",
        "Ihr Bestätigungscode lautet 662310",
        "Votre code de vérification : 118822",
        "Your PIN is 9911",
    ],
)
def test_verification_codes_are_skipped(text: str) -> None:
    assert verdict(Msg(text=text)) is Skip.CODE


@pytest.mark.parametrize(
    "text",
    [
        "meet at 1930 by the fountain?",
        "the code review is at 3, can you come?",
        "it cost 2,500 dollars can you believe it",
        "call me at 5551234",
    ],
)
def test_numbers_or_the_word_code_alone_pass(text: str) -> None:
    assert verdict(Msg(text=text)) is None


@pytest.mark.parametrize("sender", ["12345", "262966", "AMAZON", "Verify", "urn:biz:1234"])
def test_short_code_and_alphanumeric_senders_are_skipped(sender: str) -> None:
    assert verdict(Msg(sender_id=sender, text="Your order shipped! Reply STOP")) is Skip.SHORT_CODE


def test_groups_follow_the_group_policy() -> None:
    assert verdict(Msg(), group=True) is Skip.GROUP_NOT_PARTICIPATING
    assert verdict(Msg(), group=True, participates=True) is None
    assert verdict(Msg(), group=True, participates=True, groups="never") is Skip.GROUP
    assert verdict(Msg(), group=True, groups="always") is None
    assert verdict(Msg(), groups="never") is None  # not a group


def test_policy_from_settings_and_freshness(tmp_path: object) -> None:
    defaults = SuggestPolicy.from_settings(ServerSettings())
    assert defaults == SuggestPolicy(auto=True, groups="participating", max_age=timedelta(hours=24))
    custom = SuggestPolicy.from_settings(
        ServerSettings(auto_suggest=False, suggest_groups="never", suggest_max_age_hours=2)
    )
    assert custom == SuggestPolicy(auto=False, groups="never", max_age=timedelta(hours=2))
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert custom.fresh(now - timedelta(hours=1, minutes=59), now)
    assert not custom.fresh(now - timedelta(hours=2, seconds=1), now)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVASSIST_AUTO_SUGGEST", "false")
    monkeypatch.setenv("CONVASSIST_SUGGEST_GROUPS", "always")
    monkeypatch.setenv("CONVASSIST_SUGGEST_MAX_AGE_HOURS", "6")
    policy = SuggestPolicy.from_settings(ServerSettings())
    assert policy == SuggestPolicy(auto=False, groups="always", max_age=timedelta(hours=6))
    monkeypatch.setenv("CONVASSIST_SUGGEST_GROUPS", "sometimes")
    with pytest.raises(ValueError, match=r"suggest_groups|CONVASSIST_SUGGEST_GROUPS"):
        ServerSettings()
