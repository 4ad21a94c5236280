from collections.abc import Mapping, Sequence
from typing import Any

def chain_links(
    previous: bytes,
    heads: list[str] | list[bytes],
    keys: list[Any],
    tails: Mapping[Any, str | bytes] | Sequence[str | bytes],
) -> list[bytearray]: ...
