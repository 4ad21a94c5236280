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
# included), tails as bytes or text, looked up by key.
rows = st.lists(
    st.tuples(st.text(max_size=80), st.one_of(st.binary(max_size=600), st.text(max_size=200))),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(previous=st.binary(min_size=32, max_size=32), rows=rows)
def test_compiled_and_python_links_agree(
    previous: bytes, rows: list[tuple[str, bytes | str]]
) -> None:
    heads = [head for head, _ in rows]
    tails = [tail for _, tail in rows]
    keys = list(range(len(rows)))
    expected = spelled_out(
        previous, heads, [tail.encode() if isinstance(tail, str) else tail for tail in tails]
    )
    python = ledger.chain_links_python(previous, heads, keys, tails)
    links = compiled().chain_links(previous, heads, keys, tails)
    assert [type(link) for link in links] == [bytearray] * len(rows)
    assert links == python == expected


class Tails(dict[tuple[str, int], bytes]):
    """As the store's: a tail built on first use."""

    def __missing__(self, key: tuple[str, int]) -> bytes:
        value = self[key] = f"\x1f{key[0]}\x1f{key[1]}".encode()
        return value


def test_tails_are_looked_up_by_key_and_built_when_missing() -> None:
    heads = [f"2026-11-30 08:0{n}" for n in range(6)]
    keys = [("1001", 1), ("1002", 1), ("1001", 1), ("1001", 15), ("1002", 1), ("1001", 1)]
    tails = Tails()
    links = compiled().chain_links(bytes(32), heads, keys, tails)
    assert len(tails) == 3
    expected = spelled_out(bytes(32), heads, [Tails()[key] for key in keys])
    assert links == ledger.chain_links_python(bytes(32), heads, keys, Tails()) == expected


def test_compiled_links_refuse_malformed_arguments() -> None:
    chain_links = compiled().chain_links
    previous = bytes(32)
    with pytest.raises(ValueError, match="32-byte"):
        chain_links(b"short", [b"a"], [0], [b"b"])
    with pytest.raises(ValueError, match="differ in length"):
        chain_links(previous, [b"a", b"b"], [0], [b"c"])
    with pytest.raises(TypeError, match=r"tails\[1\] is neither bytes nor str"):
        chain_links(previous, [b"a", b"b"], [0, 1], [b"c", 4])
    with pytest.raises(TypeError, match=r"heads\[0\] is neither bytes nor str"):
        chain_links(previous, [None], [0], [b"c"])
    with pytest.raises(KeyError):
        chain_links(previous, ["a"], ["absent"], {"present": b"c"})
    with pytest.raises(IndexError):
        chain_links(previous, ["a"], [5], [b"c"])
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate has no UTF-8
        chain_links(previous, ["\ud800"], [0], [b"c"])
    with pytest.raises(TypeError, match="must be lists"):
        chain_links(previous, (b"a",), [0], [b"c"])
    with pytest.raises(TypeError):
        chain_links(previous, [b"a"], [0])
    assert chain_links(previous, ["08:00"], [0], ["tail"]) == chain_links(
        previous, [b"08:00"], [0], [b"tail"]
    )
    assert chain_links(previous, [], [], []) == []


def test_threads_hashing_at_once_each_get_their_own_chain() -> None:
    chain_links = compiled().chain_links
    batches = [
        (
            hashlib.sha256(str(n).encode()).digest(),
            [f"2026-11-{n + 1:02d} 08:{i % 60:02d}" for i in range(20_000)],
            [i % 50 for i in range(20_000)],
            [f"\x1f{1000 + k}\x1f1".encode() for k in range(50)],
        )
        for n in range(8)
    ]
    with ThreadPoolExecutor(4) as pool:
        links = list(pool.map(lambda batch: chain_links(*batch), batches))
    assert links == [ledger.chain_links_python(*batch) for batch in batches]
