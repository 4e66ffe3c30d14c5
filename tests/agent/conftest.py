"""Fixtures for the chat.db reader tests: the shared real fixtures and generated databases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.agent.chatdb_factory import (
    CHATDB_FIXTURES,
    FIXTURE_DB,
    GeneratedChatDB,
    build_chatdb,
)

# The README's expected text for every fixture blob whose full text is known. `LongMessage`
# (2359 characters) and `ExtraData` (truncated on purpose) are checked separately.
EXPECTED_BLOB_TEXT: dict[str, str | None] = {
    "0123456789": "0123456789",
    "35123": (
        "0123456789\nBold Italics Underline Strikethrough\xa0\xa0Big Small Shake Nod Explode "
        "Ripple Bloom Jitter"
    ),
    "AppMessage": "\ufffc",
    "AppleMusicLyrics": (
        "https://music.apple.com/us/lyrics/1329891623?ts=11.108&te=16.031&l=en&tk=2.v1."
        "VsuX9f%2BaT1PyrgMgIT7ANQ%3D%3D&itsct=sharing_msg_lyrics&itscg=50401"
    ),
    "Array": "A single ChatGPT instance takes 5MW of power to run",
    "Attachment": (
        "\ufffcThis is how the notes look to me fyi, in case it helps make sense of anything"
    ),
    "AttachmentI16": "\ufffc",
    "AttributedBodyTextOnly": "Noter test",
    "AttributedBodyTextOnly2": "Test 3",
    "Blank": None,
    "Code": "000123 is your security code. Don't share your code.",
    "CustomReaction": (
        "Reacted with a sticker to \u201cLike I wonder if the stickers can be reactions \u201d"
        "\ufffc"
    ),
    "Date": "Hi. Right now or tomorrow?",
    "EditedWithFormatting": "Test",
    "Email": "asdfghjklq@gmail.com might work",
    "EmojiBoldUnderline": "\U0001f171\ufe0fBold_Underline",
    "Formatted": "Big small",
    "Mention": "Test Dad ",
    "MultiAttachment": "\ufffc" * 19,
    "MultiPart": "\ufffctest 1\ufffctest 2 \ufffctest 3",
    "MultiPartWithDeleted": (
        "From arbitrary byte stream:\r\ufffcTo native Rust data structures:\r"
    ),
    "OverlappingFormat": "8:00 pm",
    "PhoneNumber": "What about 0000000000",
    "SingleLink": (
        "https://www.ghacks.net/2020/01/23/lastpass-no-longer-listed-on-the-chrome-web-store/"
    ),
    "StyledLink": "https://github.com/ReagentX/imessage-exporter/discussions/553",
    "TextEffects": "Big small shake nod explode ripple bloom jitter",
    "TextStyles": "Bold underline italic strikethrough all four",
    "TextStylesMixed": "Underline normal jitter normal",
    "TextStylesSingleRange": "Everything",
    "Transcription": "\ufffc",
    "URL": "https://github.com/ReagentX/Logria",
    "URLMessage": "https://twitter.com/xxxxxxxxx/status/0000223300009216128",
    "WeirdText": "\U0001d58d\U0001d58a\U0001d591\U0001d591\U0001d594 "
    "\U0001d59c\U0001d594\U0001d597\U0001d591\U0001d589",
}
LONG_MESSAGE_PREFIX = "Sed nibh velit, sodales et facilisis ut, sodales id libero."
LONG_MESSAGE_LENGTH = 2359


def _require_fixtures() -> None:
    if not FIXTURE_DB.is_file():
        pytest.skip(f"chat.db fixtures not found under {CHATDB_FIXTURES} (CONVASSIST_SHARED_DIR)")


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The shared chat.db fixture directory (read-only, never copied into the repo)."""
    _require_fixtures()
    return CHATDB_FIXTURES


@pytest.fixture(scope="session")
def generated_db_template(tmp_path_factory: pytest.TempPathFactory) -> GeneratedChatDB:
    """A generated chat.db (real schema, 3,000 messages); copy it before changing it."""
    _require_fixtures()
    path = tmp_path_factory.mktemp("chatdb") / "chat.db"
    return build_chatdb(path, messages=3000, fixture_blobs=EXPECTED_BLOB_TEXT)


@pytest.fixture
def generated_db(generated_db_template: GeneratedChatDB, tmp_path: Path) -> GeneratedChatDB:
    """A private copy of the generated chat.db that the test may modify."""
    path = tmp_path / "chat.db"
    shutil.copyfile(generated_db_template.path, path)
    return GeneratedChatDB(
        path=path,
        messages=generated_db_template.messages,
        chats=generated_db_template.chats,
        handles=generated_db_template.handles,
    )
