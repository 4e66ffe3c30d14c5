"""Token storage: the keychain through keyring (an in-memory backend stands in for the macOS
Keychain here) and the 0600 file used where no keychain exists."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import chainer, fail, null

from convassist.agent.client import TokenGrant
from convassist.agent.credentials import (
    KEYRING_SERVICE,
    FileStore,
    KeyringStore,
    TokenStoreError,
    choose_store,
    keychain_available,
    open_store,
)
from convassist.agent.registration import save_grant
from convassist.agent.settings import AgentSettings
from convassist.agent.state import StateDB

SERVER = "https://ca.example.com"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """The stand-in for the macOS Keychain: a dict."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not found")


class LockedKeyring(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.KeyringLocked("the keychain is locked")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def no_keychain() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_fail_null_and_empty_chainer_backends_are_not_keychains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not keychain_available(fail.Keyring())
    assert not keychain_available(null.Keyring())
    assert keychain_available(MemoryKeyring())
    monkeypatch.setattr(keyring.backend, "_limit", lambda _backend: False)
    assert not keychain_available(chainer.ChainerBackend())


def test_keyring_store_round_trip(memory_keyring: MemoryKeyring) -> None:
    store = KeyringStore()
    assert store.get(SERVER) is None
    store.set(SERVER, "tok-1")
    assert memory_keyring.items == {(KEYRING_SERVICE, SERVER): "tok-1"}
    assert store.get(SERVER) == "tok-1"
    store.delete(SERVER)
    store.delete(SERVER)  # deleting twice is fine
    assert store.get(SERVER) is None
    assert KEYRING_SERVICE in store.describe()


def test_locked_keychain_is_a_clear_error() -> None:
    store = KeyringStore(LockedKeyring())
    with pytest.raises(TokenStoreError, match="CONVASSIST_AGENT_TOKEN_STORE=file"):
        store.set(SERVER, "tok")


def test_file_store_is_private_and_keeps_one_token_per_server(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "agent")
    store.set(SERVER, "tok-1")
    store.set("http://127.0.0.1:3100", "tok-2")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.get(SERVER) == "tok-1"
    assert store.get("http://127.0.0.1:3100") == "tok-2"
    store.set(SERVER, "tok-3")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.get(SERVER) == "tok-3"
    assert list(store.path.parent.iterdir()) == [store.path]  # no temporary files left
    store.delete(SERVER)
    store.delete("http://127.0.0.1:3100")
    assert not store.path.exists()
    assert "0600" in store.describe()


def test_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(TokenStoreError, match=str(store.path)):
        store.get(SERVER)


def test_choose_store(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    assert isinstance(choose_store("auto", tmp_path), KeyringStore)
    assert isinstance(choose_store("keyring", tmp_path), KeyringStore)
    assert isinstance(choose_store("file", tmp_path), FileStore)
    assert isinstance(open_store("keyring", tmp_path), KeyringStore)
    assert isinstance(open_store("file", tmp_path), FileStore)


def test_without_a_keychain_the_file_is_used(tmp_path: Path, no_keychain: None) -> None:
    assert isinstance(choose_store("auto", tmp_path), FileStore)
    with pytest.raises(TokenStoreError, match="no keychain"):
        choose_store("keyring", tmp_path)


def grant(token: str) -> TokenGrant:
    return TokenGrant(
        device_id="8b0c0000-0000-0000-0000-000000000001",
        token=token,
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    )


def test_save_grant_records_where_the_token_is(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    settings = AgentSettings(state_dir=tmp_path / "agent")
    store = save_grant(settings, SERVER, "Mac", grant("tok-1"))
    assert store.kind == "keyring"
    assert memory_keyring.items == {(KEYRING_SERVICE, SERVER): "tok-1"}
    with StateDB.open(tmp_path / "agent") as state:
        saved = state.registration()
    assert saved is not None and saved.token_store == "keyring"

    # Moving to the file store removes the keychain entry: one token, one place.
    settings = AgentSettings(state_dir=tmp_path / "agent", token_store="file")
    store = save_grant(settings, SERVER, "Mac", grant("tok-2"))
    assert store.kind == "file"
    assert memory_keyring.items == {}
    assert FileStore(tmp_path / "agent").get(SERVER) == "tok-2"
