"""Text shown on a terminal: control characters (escape sequences a terminal acts on) and
name bytes that are not UTF-8 escaped, so what a snapshot, a key slot or a claim holds is
shown, never executed by the terminal."""

from __future__ import annotations

_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def printable(text: str) -> str:
    """`text` with control characters and undecodable name bytes escaped, for a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a name byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
