"""AMF0, the value encoding of RTMP commands and of FLV script data.

Decoding maps AMF0 to Python: number → float, boolean → bool, string and long
string → str, object / ECMA array / typed object → dict, strict array → list,
null and undefined → None, date → float (ms since the epoch). Encoding is the
reverse for the types a server sends (None, bool, int, float, str, dict, list).
AMF3 values (the 0x11 switch marker) are refused: publishers speak AMF0.
"""

from __future__ import annotations

import struct
from typing import Any

from media.rtmp.errors import ProtocolError

__all__ = ["decode", "decode_all", "encode"]

_NUMBER, _BOOLEAN, _STRING, _OBJECT = 0x00, 0x01, 0x02, 0x03
_NULL, _UNDEFINED, _REFERENCE, _ECMA_ARRAY, _OBJECT_END = 0x05, 0x06, 0x07, 0x08, 0x09
_STRICT_ARRAY, _DATE, _LONG_STRING, _UNSUPPORTED = 0x0A, 0x0B, 0x0C, 0x0D
_XML_DOCUMENT, _TYPED_OBJECT = 0x0F, 0x10

_MAX_DEPTH = 32  # nesting a publisher may send; deeper is an attack, not metadata
_F64 = struct.Struct(">d")


def decode(data: bytes, offset: int = 0) -> tuple[Any, int]:
    """One value at `offset`; returns it and the offset just after it."""
    try:
        return _value(data, offset, 0)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ProtocolError(f"truncated or invalid AMF0 at byte {offset}: {e}") from e


def decode_all(data: bytes) -> list[Any]:
    """Every value in `data`, in order (a command is a sequence of values)."""
    values, offset = [], 0
    while offset < len(data):
        value, offset = decode(data, offset)
        values.append(value)
    return values


def encode(*values: Any) -> bytes:
    """The AMF0 bytes of `values`, back to back."""
    out = bytearray()
    for value in values:
        _encode(out, value)
    return bytes(out)


def _string(data: bytes, offset: int, size_bytes: int) -> tuple[str, int]:
    size = int.from_bytes(data[offset : offset + size_bytes], "big")
    start = offset + size_bytes
    if start + size > len(data):
        raise IndexError("string runs past the end")
    return data[start : start + size].decode("utf-8"), start + size


def _properties(data: bytes, offset: int, depth: int) -> tuple[dict[str, Any], int]:
    """Key/value pairs up to the empty-key + object-end marker."""
    result: dict[str, Any] = {}
    while True:
        key, offset = _string(data, offset, 2)
        if key == "" and data[offset] == _OBJECT_END:
            return result, offset + 1
        result[key], offset = _value(data, offset, depth + 1)


def _value(data: bytes, offset: int, depth: int) -> tuple[Any, int]:
    if depth > _MAX_DEPTH:
        raise ProtocolError("AMF0 nesting too deep")
    marker = data[offset]
    offset += 1
    if marker == _NUMBER:
        return _F64.unpack_from(data, offset)[0], offset + 8
    if marker == _BOOLEAN:
        return data[offset] != 0, offset + 1
    if marker == _STRING:
        return _string(data, offset, 2)
    if marker in (_LONG_STRING, _XML_DOCUMENT):
        return _string(data, offset, 4)
    if marker == _OBJECT:
        return _properties(data, offset, depth)
    if marker == _TYPED_OBJECT:
        _class_name, offset = _string(data, offset, 2)
        return _properties(data, offset, depth)
    if marker == _ECMA_ARRAY:
        # The count is a hint only (encoders get it wrong); the end marker decides.
        return _properties(data, offset + 4, depth)
    if marker == _STRICT_ARRAY:
        count = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        items = []
        for _ in range(count):
            item, offset = _value(data, offset, depth + 1)
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
