"""The punch chain's links in C (clockd/_chainlinks.c) against their Python definition: equal
for any input, refusing malformed arguments, and right when threads hash at once (the C loop
runs without the GIL)."""

from __future__ import annotations

import hashlib
import importlib.util
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockd import ledger
from tests.conftest import IN_CI


def compiled() -> ModuleType:
    """The compiled module; a build without it skips, except under CI=true where the build
    environment has a compiler and OpenSSL's headers and it must be there."""
    if importlib.util.find_spec("clockd._chainlinks") is None:
        message = "clockd._chainlinks was not built (no compiler or OpenSSL headers)"
        if IN_CI:
            pytest.fail(f"{message} (required when CI=true)")
        pytest.skip(message)
    import clockd._chainlinks as module

    return module


def test_clockd_links_in_c_where_it_was_built() -> None:
    assert ledger.chain_links is compiled().chain_links


def spelled_out(previous: bytes, heads: list[str], tails: list[bytes]) -> list[bytes]:
    links = []
    for head, tail in zip(heads, tails, strict=True):
        previous = hashlib.sha256(previous + head.encode() + tail).digest()
        links.append(previous)
    return links


# Heads as the store gives them (a punch's time as text; any text here, NUL and non-ASCII
# included), tails as bytes.
rows = st.lists(st.tuples(st.text(max_size=80), st.binary(max_size=200)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(previous=st.binary(min_size=32, max_size=32), rows=rows)
def test_compiled_and_python_links_agree(previous: bytes, rows: list[tuple[str, bytes]]) -> None:
    heads, tails = [head for head, _ in rows], [tail for _, tail in rows]
    expected = spelled_out(previous, heads, tails)
    python = ledger.chain_links_python(previous, heads, tails)
    links = compiled().chain_links(previous, heads, tails)
    assert [type(link) for link in links] == [bytearray] * len(rows)
    assert links == python == expected


def test_compiled_links_refuse_malformed_arguments() -> None:
    chain_links = compiled().chain_links
    previous = bytes(32)
    with pytest.raises(ValueError, match="32-byte"):
        chain_links(b"short", [b"a"], [b"b"])
    with pytest.raises(ValueError, match="differ in length"):
        chain_links(previous, [b"a", b"b"], [b"c"])
    with pytest.raises(TypeError, match=r"tails\[1\] is neither bytes nor str"):
        chain_links(previous, [b"a", b"b"], [b"c", 4])
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8
        chain_links(previous, ["\ud800"], [b"c"])
    assert chain_links(previous, ["08:00"], ["tail"]) == chain_links(
        previous, [b"08:00"], [b"tail"]
    )
    with pytest.raises(TypeError, match="must be lists"):
        chain_links(previous, (b"a",), [b"c"])
    with pytest.raises(TypeError):
        chain_links(previous, [b"a"])
    assert chain_links(previous, [], []) == []


def test_threads_hashing_at_once_each_get_their_own_chain() -> None:
    chain_links = compiled().chain_links
    batches = [
        (
            hashlib.sha256(str(n).encode()).digest(),
            [f"2026-11-{n + 1:02d} 08:{i % 60:02d}" for i in range(20_000)],
            [f"\x1f{1000 + i % 50}\x1f1".encode() for i in range(20_000)],
        )
        for n in range(8)
    ]
    with ThreadPoolExecutor(4) as pool:
        links = list(pool.map(lambda batch: chain_links(*batch), batches))
    assert links == [ledger.chain_links_python(*batch) for batch in batches]
