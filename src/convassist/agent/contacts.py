"""Names for iMessage handles, read from the macOS AddressBook databases.

Contacts lives in Core Data SQLite files: `~/Library/Application Support/AddressBook/
AddressBook-v22.abcddb` and one per account under `Sources/*/`. People are `ZABCDRECORD` rows
(`ZFIRSTNAME`, `ZLASTNAME`, `ZNICKNAME`, `ZORGANIZATION`); their numbers and addresses are
`ZABCDPHONENUMBER.ZFULLNUMBER` and `ZABCDEMAILADDRESS.ZADDRESS`, linked by `ZOWNER`.

Handles on both sides are normalised the same way (`normalize_handle`): emails lower-case;
phone numbers to `+<country><number>` digits, a national number getting the configured default
country code. A name is "First Last", else the nickname, else the organisation. Each file is
opened read-only; a file that cannot be read is skipped with a warning (names are optional,
syncing goes on without them).
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from convassist.agent.chatdb import ChatInfo
from convassist.core.logging import get_logger

__all__ = [
    "AddressBookContact",
    "ContactBook",
    "addressbook_paths",
    "load_contacts",
    "normalize_handle",
]

log = get_logger(__name__)

ADDRESSBOOK_FILE = "AddressBook-v22.abcddb"
_SHORT_CODE_MAX_DIGITS = 6


def default_addressbook_dir() -> Path:
    return Path.home() / "Library" / "Application Support" / "AddressBook"


def addressbook_paths(root: Path | None = None) -> list[Path]:
    """The top-level AddressBook database and every `Sources/*/` one that exists."""
    base = root if root is not None else default_addressbook_dir()
    candidates = [base / ADDRESSBOOK_FILE, *sorted(base.glob(f"Sources/*/{ADDRESSBOOK_FILE}"))]
    return [path for path in candidates if path.is_file()]


def normalize_handle(handle: str, default_country_code: str = "1") -> str:
    """A comparable form of a phone number or email (see the module docstring)."""
    value = handle.strip()
    lowered = value.lower()
    for prefix in ("mailto:", "tel:"):
        if lowered.startswith(prefix):
            value, lowered = value[len(prefix) :].strip(), lowered[len(prefix) :].strip()
    if "@" in value:
        return lowered
    digits = "".join(ch for ch in value if ch.isdigit())
    if not digits:
        return lowered
    country = default_country_code.lstrip("+")
    if value.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if len(digits) <= _SHORT_CODE_MAX_DIGITS:
        return digits  # a short code (SMS services): no country
    if country == "1":
        # NANP: 10 digits are national; 11 starting with 1 (and anything longer) are complete.
        return "+1" + digits if len(digits) == 10 else "+" + digits
    if digits.startswith("0"):
        return "+" + country + digits[1:]  # national trunk prefix
    return "+" + country + digits


@dataclass(frozen=True, slots=True)
class AddressBookContact:
    """A person's name for one handle, shaped like the server's `SyncContact`."""

    apple_id: str
    display_name: str
    phone_number: str | None
    email: str | None


def _display_name(
    first: str | None, last: str | None, nickname: str | None, organization: str | None
) -> str | None:
    full = " ".join(part.strip() for part in (first, last) if part and part.strip())
    for name in (full, nickname, organization):
        if name and name.strip():
            return name.strip()
    return None


class ContactBook:
    """Normalised handle → contact name."""

    def __init__(self, default_country_code: str = "1") -> None:
        self.default_country_code = default_country_code
        self._names: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._names)

    def add(self, handle: str, name: str) -> None:
        """Record a name for a handle; the first name seen for a handle wins."""
        key = normalize_handle(handle, self.default_country_code)
        if key:
            self._names.setdefault(key, name)

    def name_for(self, handle: str) -> str | None:
        """The contact name for a chat.db handle, if the AddressBook has it."""
        return self._names.get(normalize_handle(handle, self.default_country_code))

    def contacts_for(self, handles: Iterable[str]) -> list[AddressBookContact]:
        """Sync payload entries for the chat.db handles that have a name (one per handle)."""
        contacts: list[AddressBookContact] = []
        for handle in dict.fromkeys(handles):
            name = self.name_for(handle)
            if name is None:
                continue
            is_email = "@" in handle
            contacts.append(
                AddressBookContact(
                    apple_id=handle.strip().lower() if is_email else handle.strip(),
                    display_name=name,
                    phone_number=None
                    if is_email
                    else normalize_handle(handle, self.default_country_code),
                    email=handle.strip().lower() if is_email else None,
                )
            )
        return contacts

    def chat_title(self, chat: ChatInfo) -> str | None:
        """A human name for a conversation: its own name, else its participants' names."""
        if chat.display_name:
            return chat.display_name
        names = [self.name_for(handle) or handle for handle in chat.participants]
        return ", ".join(names) or None


def load_contacts(
    paths: Iterable[Path] | None = None, *, default_country_code: str = "1"
) -> ContactBook:
    """Read every AddressBook database (default: `addressbook_paths()`) into a `ContactBook`."""
    book = ContactBook(default_country_code)
    files = list(paths) if paths is not None else addressbook_paths()
    for path in files:
        try:
            added = _read_addressbook(path, book)
        except (sqlite3.Error, OSError) as exc:
            log.warning("contacts.unreadable", path=str(path), error=type(exc).__name__)
            continue
        log.debug("contacts.read", path=str(path), handles=added)
    log.info("contacts.loaded", sources=len(files), handles=len(book))
    return book


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {str(row[1]).upper() for row in conn.execute(f"PRAGMA table_info({table})")}


def _read_addressbook(path: Path, book: ContactBook) -> int:
    """Add one AddressBook file's phone numbers and emails to `book`; returns how many."""
    uri = f"file:{urllib.parse.quote(path.absolute().as_posix(), safe='/')}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=2.0, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = 1")
        people = _columns(conn, "ZABCDRECORD")
        if "Z_PK" not in people:
            return 0
        name_cols = ", ".join(
            f"r.{c}" if c in people else "NULL"
            for c in ("ZFIRSTNAME", "ZLASTNAME", "ZNICKNAME", "ZORGANIZATION")
        )
        sources = [
            ("ZABCDPHONENUMBER", "ZFULLNUMBER"),
            ("ZABCDEMAILADDRESS", "ZADDRESS"),
        ]
        added = 0
        conn.execute("BEGIN")
        try:
            for table, column in sources:
                if not {"ZOWNER", column} <= _columns(conn, table):
                    continue
                rows = conn.execute(
                    f"SELECT t.{column}, {name_cols} FROM {table} t "  # noqa: S608
                    f"JOIN ZABCDRECORD r ON r.Z_PK = t.ZOWNER WHERE t.{column} IS NOT NULL"
                ).fetchall()
                for handle, first, last, nickname, organization in rows:
                    name = _display_name(first, last, nickname, organization)
                    if name and isinstance(handle, str) and handle.strip():
                        book.add(handle, name)
                        added += 1
        finally:
            conn.execute("COMMIT")
        return added
    finally:
        conn.close()
