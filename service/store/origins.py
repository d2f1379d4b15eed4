"""How a publishable key's origins are kept in a token row: a JSON array, or NULL."""

from __future__ import annotations

import json
from collections.abc import Sequence


def encode_origins(origins: Sequence[str] | None) -> str | None:
    return None if origins is None else json.dumps(sorted(set(origins)))


def decode_origins(raw: str | None) -> frozenset[str] | None:
    return None if raw is None else frozenset(json.loads(raw))
