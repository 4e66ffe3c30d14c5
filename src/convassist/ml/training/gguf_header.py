"""The scalar metadata of a GGUF file, read straight from its key-value section.

`gguf.GGUFReader` maps the whole file and turns every metadata array and tensor record into
numpy objects first: for Gemma 3's 262k-token vocabulary that takes a minute on a busy
2-core machine, long enough for `POST /training/jobs` to time out. Training needs only a
few scalars (the architecture and some hyper-parameters), so this walks the key-value
section once and skips every array by its length: about a second for the same file.

The layout (GGUF versions 2 and 3, either byte order): magic `GGUF`, uint32 version,
uint64 tensor count, uint64 key-value count, then per pair a string key, a uint32 value
type and the value. A string is a uint64 length and UTF-8 bytes; an array is a uint32 item
type, a uint64 count and the items.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

Scalar = int | float | bool | str

MAX_STRING_BYTES = 64 * 1024 * 1024
"""Longer than any real key or value (chat templates are kilobytes): a corrupt length."""

_STRING = 8
_ARRAY = 9
_NUMBERS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
"""GGUF value type → struct format of the numbers (and bool)."""


class GGUFHeaderError(ValueError):
    """The file is not a GGUF file this reader understands, or its header is cut short."""


class _Walker:
    def __init__(self, file: BinaryIO, order: str) -> None:
        self.file = file
        self.order = order

    def number(self, fmt: str) -> int | float | bool:
        size = struct.calcsize(fmt)
        data = self.file.read(size)
        if len(data) != size:
            raise GGUFHeaderError("the GGUF header ends early")
        value: int | float | bool = struct.unpack(self.order + fmt, data)[0]
        return value

    def count(self) -> int:
        return int(self.number("Q"))

    def string(self) -> str:
        length = self.count()
        if length > MAX_STRING_BYTES:
            raise GGUFHeaderError(f"a GGUF string claims {length} bytes: the file is corrupt")
        data = self.file.read(length)
        if len(data) != length:
            raise GGUFHeaderError("the GGUF header ends early")
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Scalar | None:
        """The value of type `kind`; arrays are skipped (None)."""
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            self.skip_array()
            return None
        fmt = _NUMBERS.get(kind)
        if fmt is None:
            raise GGUFHeaderError(f"unknown GGUF value type {kind}")
        return self.number(fmt)

    def skip_array(self) -> None:
        kind, count = int(self.number("I")), self.count()
        fmt = _NUMBERS.get(kind)
        if fmt is not None:
            self.file.seek(count * struct.calcsize(fmt), 1)
            return
        for _ in range(count):
            if kind == _STRING:
                self.file.seek(self.count(), 1)
            else:
                self.value(kind)


def read_scalars(path: Path) -> dict[str, Scalar]:
    """Every scalar key of the file's metadata (numbers, bools, strings), arrays left out."""
    with path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise GGUFHeaderError(f"{path.name} is not a GGUF file")
        raw = file.read(4)
        if len(raw) != 4:
            raise GGUFHeaderError("the GGUF header ends early")
        # A big-endian file's version reads as a huge little-endian number.
        order = "<" if struct.unpack("<I", raw)[0] < 0x10000 else ">"
        version = struct.unpack(order + "I", raw)[0]
        if version not in (2, 3):
            raise GGUFHeaderError(f"GGUF version {version} is not supported (2 and 3 are)")
        walker = _Walker(file, order)
        walker.count()  # tensors
        scalars: dict[str, Scalar] = {}
        for _ in range(walker.count()):
            key = walker.string()
            value = walker.value(int(walker.number("I")))
            if value is not None:
                scalars[key] = value
    return scalars
