"""The bounded form of a rejected input, shared by every dead-letter writer (ingest, consumers).

A dead-letter record carries a short excerpt of what was rejected, its size and its SHA-256, never
the whole input: a multi-MB frame copied into a dead letter would itself exceed the broker's
message size, and one copy per bad ticker would multiply it. The hash still identifies the input
exactly (e.g. against the simulator's record file or a packet capture).
"""

from __future__ import annotations

import hashlib
from typing import Any

#: Characters of the rejected input kept in a dead-letter record.
EXCERPT_CHARS = 2048


def raw_fields(raw: str | bytes | bytearray | None, limit: int = EXCERPT_CHARS) -> dict[str, Any]:
    """`{"raw": excerpt, "raw_size": bytes, "raw_sha256": hex, "raw_truncated": bool}` for a record.

    The excerpt is ASCII-safe (undecodable bytes and lone surrogates are replaced), so the record
    can always be encoded, whatever the input held.
    """
    if raw is None:
        data = b""
    elif isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = bytes(raw)
    decoded = data[: limit * 4].decode("utf-8", "replace")  # a lone surrogate becomes U+FFFD
    return {
        "raw": decoded[:limit],
        "raw_size": len(data),
        "raw_sha256": hashlib.sha256(data).hexdigest(),
        "raw_truncated": len(data) > limit * 4 or len(decoded) > limit,
    }
