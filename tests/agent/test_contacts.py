"""AddressBook reading and handle normalisation, on AddressBook databases generated here."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from convassist.agent.chatdb import ChatInfo
from convassist.agent.contacts import (
    ADDRESSBOOK_FILE,
    AddressBookContact,
    ContactBook,
    addressbook_paths,
    load_contacts,
    normalize_handle,
)
from convassist.server.sync.schemas import SyncContact

# The Core Data tables and columns the reader uses, plus a few of the real ones around them.
ADDRESSBOOK_SCHEMA = """
CREATE TABLE ZABCDRECORD (Z_PK INTEGER PRIMARY KEY, Z_ENT INTEGER, ZFIRSTNAME VARCHAR,
  ZLASTNAME VARCHAR, ZMIDDLENAME VARCHAR, ZNICKNAME VARCHAR, ZORGANIZATION VARCHAR,
  ZUNIQUEID VARCHAR);
CREATE TABLE ZABCDPHONENUMBER (Z_PK INTEGER PRIMARY KEY, ZOWNER INTEGER, ZFULLNUMBER VARCHAR,
  ZLABEL VARCHAR, ZORDERINGINDEX INTEGER);
CREATE TABLE ZABCDEMAILADDRESS (Z_PK INTEGER PRIMARY KEY, ZOWNER INTEGER, ZADDRESS VARCHAR,
  ZADDRESSNORMALIZED VARCHAR, ZLABEL VARCHAR);
"""


def make_addressbook(
    path: Path,
    people: list[tuple[str | None, str | None, str | None, str | None]],
    phones: list[tuple[int, str]],
    emails: list[tuple[int, str]],
) -> Path:
    """people: (first, last, nickname, organisation), Z_PK = position + 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(ADDRESSBOOK_SCHEMA)
    conn.executemany(
        "INSERT INTO ZABCDRECORD (Z_PK, Z_ENT, ZFIRSTNAME, ZLASTNAME, ZNICKNAME, ZORGANIZATION) "
        "VALUES (?, 19, ?, ?, ?, ?)",
        [(i + 1, *person) for i, person in enumerate(people)],
    )
    conn.executemany("INSERT INTO ZABCDPHONENUMBER (ZOWNER, ZFULLNUMBER) VALUES (?, ?)", phones)
    conn.executemany("INSERT INTO ZABCDEMAILADDRESS (ZOWNER, ZADDRESS) VALUES (?, ?)", emails)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def addressbook_root(tmp_path: Path) -> Path:
    root = tmp_path / "AddressBook"
    make_addressbook(
        root / ADDRESSBOOK_FILE,
        [("Local", "Only", None, None)],
        [(1, "555 000 1111")],
        [],
    )
    make_addressbook(
        root / "Sources" / "A1B2" / ADDRESSBOOK_FILE,
        [
            ("Ada", "Lovelace", None, None),
            (None, None, None, "Acme Pharmacy"),
            (None, None, "Bobby", None),
            ("Grace", None, None, "Navy"),
        ],
        [(1, "(555) 123-4567"), (2, "+44 20 7946 0958"), (3, "12345"), (4, "1-555-765-4321")],
        [(1, " Ada@Example.COM "), (4, "grace@navy.mil")],
    )
    make_addressbook(
        root / "Sources" / "C3D4" / ADDRESSBOOK_FILE,
        [("Someone", "Else", None, None)],
        [(1, "555.123.4567")],  # the same number as Ada: the first source read wins
        [],
    )
    (root / "Sources" / "Empty").mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(555) 123-4567", "+15551234567"),
        ("555-123-4567", "+15551234567"),
        ("1 (555) 123-4567", "+15551234567"),
        ("+1 555 123 4567", "+15551234567"),
        ("+15551234567", "+15551234567"),
        ("tel:+1-555-123-4567", "+15551234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("12345", "12345"),
        (" Ada@Example.COM ", "ada@example.com"),
        ("mailto:Ada@Example.com", "ada@example.com"),
    ],
)
def test_normalize_handle_us_default(raw: str, expected: str) -> None:
    assert normalize_handle(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("020 7946 0958", "+442079460958"),
        ("07700 900123", "+447700900123"),
        ("+1 555 123 4567", "+15551234567"),
        ("7700 900123", "+447700900123"),
    ],
)
def test_normalize_handle_other_default_country(raw: str, expected: str) -> None:
    assert normalize_handle(raw, default_country_code="+44") == expected


def test_addressbook_paths(addressbook_root: Path) -> None:
    paths = addressbook_paths(addressbook_root)
    assert paths[0] == addressbook_root / ADDRESSBOOK_FILE
    assert [p.parent.name for p in paths[1:]] == ["A1B2", "C3D4"]
    assert addressbook_paths(addressbook_root / "missing") == []


def test_load_contacts_and_match(addressbook_root: Path) -> None:
    book = load_contacts(addressbook_paths(addressbook_root))
    assert book.name_for("+15550001111") == "Local Only"
    assert book.name_for("+15551234567") == "Ada Lovelace"
    assert book.name_for("ada@example.com") == "Ada Lovelace"
    assert book.name_for("ADA@example.com") == "Ada Lovelace"
    assert book.name_for("+442079460958") == "Acme Pharmacy"
    assert book.name_for("12345") == "Bobby"
    assert book.name_for("+15557654321") == "Grace"
    assert book.name_for("grace@navy.mil") == "Grace"
    assert book.name_for("+15559999999") is None


def test_contacts_for_sync(addressbook_root: Path) -> None:
    book = load_contacts(addressbook_paths(addressbook_root))
    contacts = book.contacts_for(
        ["+15551234567", "Ada@Example.com", "+15559999999", "+15551234567"]
    )
    assert contacts == [
        AddressBookContact("+15551234567", "Ada Lovelace", "+15551234567", None),
        AddressBookContact("ada@example.com", "Ada Lovelace", None, "ada@example.com"),
    ]
    for contact in contacts:
        SyncContact(
            apple_id=contact.apple_id,
            display_name=contact.display_name,
            phone_number=contact.phone_number,
            email=contact.email,
        )


def test_chat_titles(addressbook_root: Path) -> None:
    book = load_contacts(addressbook_paths(addressbook_root))
    one = ChatInfo(1, "iMessage;-;+15551234567", None, None, "iMessage", False, ("+15551234567",))
    group = ChatInfo(
        2, "iMessage;+;chat1", None, None, "iMessage", True, ("+15551234567", "+15559999999")
    )
    named = ChatInfo(3, "iMessage;+;chat2", None, "Family", "iMessage", True, ("+15551234567",))
    assert book.chat_title(one) == "Ada Lovelace"
    assert book.chat_title(group) == "Ada Lovelace, +15559999999"
    assert book.chat_title(named) == "Family"
    assert book.chat_title(ChatInfo(4, "x", None, None, None, False, ())) is None


def test_unreadable_source_is_skipped(addressbook_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.abcddb"
    broken.write_bytes(b"not a database" * 100)
    no_tables = tmp_path / "empty.abcddb"
    sqlite3.connect(no_tables).close()
    with capture_logs() as logs:
        book = load_contacts([broken, no_tables, *addressbook_paths(addressbook_root)])
    assert book.name_for("+15551234567") == "Ada Lovelace"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["path"] for w in warnings] == [str(broken)]
    assert "Ada" not in repr(logs)  # names are never logged


def test_old_addressbook_without_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / ADDRESSBOOK_FILE
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE ZABCDRECORD (Z_PK INTEGER PRIMARY KEY, ZFIRSTNAME VARCHAR);"
        "CREATE TABLE ZABCDPHONENUMBER (Z_PK INTEGER PRIMARY KEY, ZOWNER INTEGER, "
        "ZFULLNUMBER VARCHAR);"
        "INSERT INTO ZABCDRECORD VALUES (1, 'Solo');"
        "INSERT INTO ZABCDPHONENUMBER VALUES (1, 1, '555 222 3333');"
    )
    conn.close()
    book = load_contacts([path])
    assert book.name_for("+15552223333") == "Solo"
    assert len(book) == 1


def test_contact_book_first_name_wins() -> None:
    book = ContactBook()
    book.add("+1 555 123 4567", "First")
    book.add("5551234567", "Second")
    assert book.name_for("+15551234567") == "First"
