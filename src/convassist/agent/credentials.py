"""Where the device token lives: the OS keychain via `keyring`, else a private file.

`KeyringStore` uses the macOS Keychain (or the Secret Service / Windows Credential Locker)
under the service name `convassist-agent`, one entry per server URL. `FileStore` is the
fallback for machines without any keychain (keyring's fail or null backend, or a chainer with
no usable backend): a JSON file created with mode 0600 and replaced atomically.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Protocol

import keyring
import keyring.backend
import keyring.errors
from keyring.backends import chainer, fail, null

from convassist.agent.errors import AgentError
from convassist.agent.settings import TokenStoreKind

__all__ = [
    "KEYRING_SERVICE",
    "FileStore",
    "KeyringStore",
    "TokenStore",
    "TokenStoreError",
    "choose_store",
    "keychain_available",
    "open_store",
]

KEYRING_SERVICE = "convassist-agent"
TOKEN_FILE = "token.json"  # noqa: S105 - a file name


class TokenStoreError(AgentError):
    """The token could not be saved or read."""

    exit_code = 74  # EX_IOERR


class TokenStore(Protocol):
    """Keeps one bearer token per server URL."""

    kind: str

    def describe(self) -> str: ...
    def get(self, server_url: str) -> str | None: ...
    def set(self, server_url: str, token: str) -> None: ...
    def delete(self, server_url: str) -> None: ...


def keychain_available(backend: keyring.backend.KeyringBackend | None = None) -> bool:
    """False for keyring's fail/null backends and for a chainer with nothing to chain."""
    active = backend if backend is not None else keyring.get_keyring()
    if isinstance(active, fail.Keyring | null.Keyring):
        return False
    if isinstance(active, chainer.ChainerBackend):
        return any(keychain_available(b) for b in active.backends)
    return True


class KeyringStore:
    """The OS keychain through `keyring`."""

    kind = "keyring"

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        self._backend = backend if backend is not None else keyring.get_keyring()

    def describe(self) -> str:
        name = type(self._backend).__module__
        if name.endswith("macOS") or "macOS" in type(self._backend).__qualname__:
            return f"the macOS Keychain (service {KEYRING_SERVICE!r})"
        return f"the system keyring {self._backend.name!r} (service {KEYRING_SERVICE!r})"

    def get(self, server_url: str) -> str | None:
        try:
            value = self._backend.get_password(KEYRING_SERVICE, server_url)
        except keyring.errors.KeyringError as exc:
            raise TokenStoreError(
                f"Could not read the token from {self.describe()}: {exc}"
            ) from exc
        return str(value) if value is not None else None

    def set(self, server_url: str, token: str) -> None:
        try:
            self._backend.set_password(KEYRING_SERVICE, server_url, token)
        except keyring.errors.KeyringError as exc:
            raise TokenStoreError(
                f"Could not save the token in {self.describe()}: {exc}. Unlock the keychain, or "
                "set CONVASSIST_AGENT_TOKEN_STORE=file to keep it in a private file instead."
            ) from exc

    def delete(self, server_url: str) -> None:
        try:
            self._backend.delete_password(KEYRING_SERVICE, server_url)
        except keyring.errors.PasswordDeleteError:
            pass
        except keyring.errors.KeyringError as exc:
            raise TokenStoreError(
                f"Could not delete the token from {self.describe()}: {exc}"
            ) from exc


class FileStore:
    """`<state dir>/token.json`, mode 0600, written to a temporary file and renamed."""

    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.path = directory / TOKEN_FILE

    def describe(self) -> str:
        return f"the file {self.path} (mode 0600)"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TokenStoreError(f"Could not read {self.path}: {exc}") from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, tokens: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{TOKEN_FILE}.{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(tokens, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TokenStoreError(f"Could not write {self.path}: {exc}") from exc

    def get(self, server_url: str) -> str | None:
        return self._load().get(server_url)

    def set(self, server_url: str, token: str) -> None:
        tokens = self._load()
        tokens[server_url] = token
        self._save(tokens)

    def delete(self, server_url: str) -> None:
        tokens = self._load()
        if tokens.pop(server_url, None) is not None:
            self._save(tokens)
        if not tokens:
            self.path.unlink(missing_ok=True)


def choose_store(preference: TokenStoreKind, state_dir: Path) -> TokenStore:
    """The store for a new token: the keychain unless there is none (or `file` is asked for)."""
    if preference == "file":
        return FileStore(state_dir)
    if preference == "keyring" or keychain_available():
        if preference == "keyring" and not keychain_available():
            raise TokenStoreError(
                "CONVASSIST_AGENT_TOKEN_STORE=keyring, but no keychain is available here."
            )
        return KeyringStore()
    return FileStore(state_dir)


def open_store(kind: str, state_dir: Path) -> TokenStore:
    """The store a token was saved in (as recorded in the agent's state)."""
    return FileStore(state_dir) if kind == FileStore.kind else KeyringStore()
