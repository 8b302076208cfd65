"""AMF0, the value encoding of RTMP commands and of FLV script data.

Decoding maps AMF0 to Python: number → float, boolean → bool, string and long
string → str, object / ECMA array / typed object → dict, strict array → list,
null and undefined → None, date → float (ms since the epoch). Encoding is the
reverse for the types a server sends (None, bool, int, float, str, dict, list).
AMF3 values (the 0x11 switch marker) are refused: publishers speak AMF0.

Decoding is bounded by a count, not by the bytes: at most `max_values` values
(nested ones included) nested at most `max_depth` deep, else `LimitExceededError`.
Commands are decoded on the ingest's event loop before their sender is
authenticated, so a message of a million null markers must cost microseconds.
"""

from __future__ import annotations

import struct
from typing import Any

from media.rtmp.errors import LimitExceededError, ProtocolError

__all__ = ["MAX_DEPTH", "MAX_VALUES", "decode", "decode_all", "encode"]

_NUMBER, _BOOLEAN, _STRING, _OBJECT = 0x00, 0x01, 0x02, 0x03
_NULL, _UNDEFINED, _REFERENCE, _ECMA_ARRAY, _OBJECT_END = 0x05, 0x06, 0x07, 0x08, 0x09
_STRICT_ARRAY, _DATE, _LONG_STRING, _UNSUPPORTED = 0x0A, 0x0B, 0x0C, 0x0D
_XML_DOCUMENT, _TYPED_OBJECT = 0x0F, 0x10

MAX_VALUES = 65_536  # defaults, for script data after a publish; commands pass tighter ones
MAX_DEPTH = 32  # far more nesting than any metadata has; the decoder recurses this deep
_F64 = struct.Struct(">d")


def decode(
    data: bytes, offset: int = 0, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH
) -> tuple[Any, int]:
    """One value at `offset`; returns it and the offset just after it."""
    return _Decoder(data, max_values, max_depth).value(offset)


def decode_all(
    data: bytes, *, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH
) -> list[Any]:
    """Every value in `data`, in order (a command is a sequence of values)."""
    decoder = _Decoder(data, max_values, max_depth)
    values, offset = [], 0
    while offset < len(data):
        value, offset = decoder.value(offset)
        values.append(value)
    return values


def encode(*values: Any) -> bytes:
    """The AMF0 bytes of `values`, back to back."""
    out = bytearray()
    for value in values:
        _encode(out, value)
    return bytes(out)


class _Decoder:
    """Decodes values from one buffer, counting them against `max_values` (nested ones
    included), so the work a peer can cause is bounded by the count, not its bytes."""

    __slots__ = ("_data", "_left", "_max_depth")

    def __init__(self, data: bytes, max_values: int, max_depth: int) -> None:
        self._data = data
        self._left = max_values
        self._max_depth = max_depth

    def value(self, offset: int) -> tuple[Any, int]:
        try:
            return self._value(offset, 0)
        except (IndexError, struct.error, UnicodeDecodeError) as e:
            raise ProtocolError(f"truncated or invalid AMF0 at byte {offset}: {e}") from e

    def _string(self, offset: int, size_bytes: int) -> tuple[str, int]:
        data = self._data
        size = int.from_bytes(data[offset : offset + size_bytes], "big")
        start = offset + size_bytes
        if start + size > len(data):
            raise IndexError("string runs past the end")
        return data[start : start + size].decode("utf-8"), start + size

    def _properties(self, offset: int, depth: int) -> tuple[dict[str, Any], int]:
        """Key/value pairs up to the empty-key + object-end marker."""
        result: dict[str, Any] = {}
        while True:
            key, offset = self._string(offset, 2)
            if key == "" and self._data[offset] == _OBJECT_END:
                return result, offset + 1
            result[key], offset = self._value(offset, depth + 1)

    def _value(self, offset: int, depth: int) -> tuple[Any, int]:
        if depth > self._max_depth:
            raise LimitExceededError(f"AMF0 nested more than {self._max_depth} deep")
        self._left -= 1
        if self._left < 0:
            raise LimitExceededError("too many AMF0 values in one message")
        data = self._data
        marker = data[offset]
        offset += 1
        if marker == _NUMBER:
            return _F64.unpack_from(data, offset)[0], offset + 8
        if marker == _BOOLEAN:
            return data[offset] != 0, offset + 1
        if marker == _STRING:
            return self._string(offset, 2)
        if marker in (_LONG_STRING, _XML_DOCUMENT):
            return self._string(offset, 4)
        if marker == _OBJECT:
            return self._properties(offset, depth)
        if marker == _TYPED_OBJECT:
            _class_name, offset = self._string(offset, 2)
            return self._properties(offset, depth)
        if marker == _ECMA_ARRAY:
            # The count is a hint only (encoders get it wrong); the end marker decides.
            return self._properties(offset + 4, depth)
        if marker == _STRICT_ARRAY:
            count = int.from_bytes(data[offset : offset + 4], "big")
            offset += 4
            items = []
            for _ in range(count):
                item, offset = self._value(offset, depth + 1)
                items.append(item)
            return items, offset
        if marker == _DATE:
            return _F64.unpack_from(data, offset)[0], offset + 10  # ms + 2-byte time zone
        if marker in (_NULL, _UNDEFINED, _UNSUPPORTED):
            return None, offset
        if marker == _REFERENCE:
            return None, offset + 2  # back-references to complex objects: no publisher sends them
        raise ProtocolError(f"unsupported AMF0 marker 0x{marker:02x}")


def _encode(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(_NULL)
    elif isinstance(value, bool):
        out += bytes((_BOOLEAN, int(value)))
    elif isinstance(value, int | float):
        out.append(_NUMBER)
        out += _F64.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(_STRING)
            out += len(raw).to_bytes(2, "big") + raw
        else:
            out.append(_LONG_STRING)
            out += len(raw).to_bytes(4, "big") + raw
    elif isinstance(value, dict):
        out.append(_OBJECT)
        for key, item in value.items():
            raw_key = str(key).encode("utf-8")
            out += len(raw_key).to_bytes(2, "big") + raw_key
            _encode(out, item)
        out += b"\x00\x00" + bytes((_OBJECT_END,))
    elif isinstance(value, list | tuple):
        out.append(_STRICT_ARRAY)
        out += len(value).to_bytes(4, "big")
        for item in value:
            _encode(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
