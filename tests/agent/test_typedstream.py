"""attributedBody decoding: the 35 real fixture blobs, the fast path's equivalence, damage."""

from __future__ import annotations

import plistlib
import random
from pathlib import Path

import pytest
import typedstream as pytypedstream

from convassist.agent import typedstream
from convassist.agent.typedstream import decode_attributed_body
from tests.agent.chatdb_factory import FRAKTUR_HELLO, make_attributed_body
from tests.agent.conftest import EXPECTED_BLOB_TEXT, LONG_MESSAGE_LENGTH, LONG_MESSAGE_PREFIX

ALL_BLOBS = sorted([*EXPECTED_BLOB_TEXT, "LongMessage", "ExtraData"])


def _blob(fixture_dir: Path, name: str) -> bytes:
    return (fixture_dir / "typedstream" / name).read_bytes()


def _library(blob: bytes) -> str:
    """What pytypedstream itself says the text is (README: contents[0].value.value)."""
    value: str = pytypedstream.unarchive_from_data(blob).contents[0].value.value
    return value


def test_all_35_fixture_blobs_are_covered(fixture_dir: Path) -> None:
    on_disk = sorted(p.name for p in (fixture_dir / "typedstream").iterdir())
    assert on_disk == ALL_BLOBS
    assert len(on_disk) == 35


@pytest.mark.parametrize("name", sorted(EXPECTED_BLOB_TEXT))
def test_fixture_blob_decodes_to_expected_text(fixture_dir: Path, name: str) -> None:
    assert decode_attributed_body(_blob(fixture_dir, name)) == EXPECTED_BLOB_TEXT[name]


def test_long_message(fixture_dir: Path) -> None:
    text = decode_attributed_body(_blob(fixture_dir, "LongMessage"))
    assert text is not None
    assert len(text) == LONG_MESSAGE_LENGTH
    assert text.startswith(LONG_MESSAGE_PREFIX)


def test_truncated_blob_is_recovered_by_the_fallback_scanner(fixture_dir: Path) -> None:
    blob = _blob(fixture_dir, "ExtraData")
    with pytest.raises(pytypedstream.InvalidTypedStreamError):
        pytypedstream.unarchive_from_data(blob)
    assert typedstream._fast_text(blob) is None  # declared length runs past the data
    text = decode_attributed_body(blob)
    assert text is not None
    assert text.startswith("This is parsing")


@pytest.mark.parametrize("name", ALL_BLOBS)
def test_fast_path_equals_pytypedstream(fixture_dir: Path, name: str) -> None:
    blob = _blob(fixture_dir, name)
    fast = typedstream._fast_text(blob)
    if name == "ExtraData":
        assert fast is None
        return
    assert fast is not None, "every well-formed fixture takes the fast path"
    assert fast == _library(blob)
    assert typedstream._library_text(blob) == fast
    assert typedstream._scan_text(blob) == fast


def _random_text(rng: random.Random) -> str:
    alphabet = "abc xyz 012 é ß 日本 🙂 👍🏽 \ufffc \n\r\t\"'" + FRAKTUR_HELLO
    size = rng.choice([0, 1, 5, 40, 126, 127, 128, 129, 500, 5000, 16383, 16384])
    return "".join(rng.choice(alphabet) for _ in range(size))


def test_fast_path_equals_pytypedstream_on_generated_blobs() -> None:
    rng = random.Random(7)
    texts = [_random_text(rng) for _ in range(300)]
    texts += ["x" * n for n in (127, 128, 0x7FFF, 0x8000, 70_000)]  # 1-, 2- and 4-byte lengths
    for text in texts:
        for mutable in (False, True):
            blob = make_attributed_body(text, mutable=mutable)
            assert _library(blob) == text
            assert typedstream._fast_text(blob) == text
            expected = text if text.strip() else None
            assert decode_attributed_body(blob) == expected


def test_other_layouts_are_left_to_pytypedstream_and_the_scanner() -> None:
    blob = make_attributed_body("hello")
    # An unknown root class: not the fast path's; pytypedstream parses it generically.
    renamed = blob.replace(b"\x12NSAttributedString", b"\x12NSAttributedStrinG")
    assert typedstream._fast_text(renamed) is None
    assert typedstream._library_text(renamed) == "hello"
    assert decode_attributed_body(renamed) == "hello"
    # Another NSString version: pytypedstream refuses it, the scanner recovers the text.
    versioned = blob.replace(b"NSString\x01", b"NSString\x02")
    assert typedstream._fast_text(versioned) is None
    assert typedstream._library_text(versioned) is None
    assert decode_attributed_body(versioned) == "hello"
    # Another system version in the header.
    other_system = blob.replace(b"\x81\xe8\x03", b"\x81\xe9\x03")
    assert typedstream._fast_text(other_system) is None
    assert decode_attributed_body(other_system) == "hello"


def test_edit_history_blobs_decode(fixture_dir: Path) -> None:
    info = plistlib.loads((fixture_dir / "edited_message" / "Edited.plist").read_bytes())
    versions = [decode_attributed_body(entry["t"]) for entry in info["ec"]["0"]]
    assert versions == ["First message  ", "Edit 1", "Edit 2", "Edited message"]


@pytest.mark.parametrize("blob", [None, b"", b"\x00", b"garbage", b"\x04\x0bstreamtyped"])
def test_empty_or_garbage_is_none(blob: bytes | None) -> None:
    assert decode_attributed_body(blob) is None


def test_whitespace_only_body_is_none() -> None:
    assert decode_attributed_body(make_attributed_body(" \n ")) is None


def test_truncated_blobs_never_raise(fixture_dir: Path) -> None:
    for name in ALL_BLOBS:
        blob = _blob(fixture_dir, name)
        for cut in range(0, len(blob), 13):
            result = decode_attributed_body(blob[:cut])
            assert result is None or isinstance(result, str)


def test_corrupted_utf8_is_scanned_not_raised() -> None:
    blob = bytearray(make_attributed_body("abcdef"))
    blob[blob.index(b"abcdef") + 2] = 0xFF
    assert decode_attributed_body(bytes(blob)) == "abdef"
