"""Drop-folder file names as ledger references: reversible for any name, valid UTF-8 for any store."""

from __future__ import annotations

import os

__all__ = ["input_ref", "name_of_ref", "storable"]


def input_ref(name: str) -> str:
    """The ledger's ``input_ref`` of a drop-folder entry: the name itself when it is valid UTF-8 without a
    backslash (nearly always); otherwise each byte that is not UTF-8 is written ``\\xNN`` and a backslash
    ``\\\\``, so that every name has its own, reversible reference (:func:`name_of_ref`)."""
    if "\\" not in name:
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(name)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def name_of_ref(ref: str) -> bytes:
    """The file name (bytes) of an ``input_ref`` made by :func:`input_ref` (without a ``#k`` suffix)."""
    out = bytearray()
    i = 0
    while i < len(ref):
        c = ref[i]
        if c == "\\" and ref[i + 1 : i + 2] == "\\":
            out += b"\\"
            i += 2
        elif c == "\\" and ref[i + 1 : i + 2] == "x":
            out.append(int(ref[i + 2 : i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def storable(text: str) -> str:
    """Error text that SQLite, JSON and MQTT take: a file name that is not UTF-8 (quoted by a reader) has its
    undecodable bytes as ``\\udcNN`` escapes instead of lone surrogates."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
