"""NDJSON line splitting: any chunking gives the same lines; oversize lines are skipped, not fatal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pymacp.bus.framing import HEAD_BYTES, LineSplitter, Oversize


def split(chunks: list[bytes], max_line: int = 1 << 20) -> list[bytes | Oversize]:
    splitter = LineSplitter(max_line)
    out: list[bytes | Oversize] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    return out + splitter.end()


def test_lines_split_across_reads_are_joined() -> None:
    assert split([b'{"a"', b":1}\n{", b'"b":2}\n']) == [b'{"a":1}', b'{"b":2}']


def test_blank_lines_are_skipped_and_carriage_returns_kept() -> None:
    assert split([b"\n  \n{}\r\n\t\n[]"]) == [b"{}\r", b"[]"]


def test_an_oversize_line_is_reported_with_its_head_and_the_next_line_survives() -> None:
    big = b'{"id":"x","p":"' + b"y" * 10_000 + b'"}'
    items = split([big[:3000], big[3000:], b"\n{}\n"], max_line=4096)
    assert len(items) == 2
    oversize, after = items
    assert isinstance(oversize, Oversize)
    assert oversize.size == len(big)
    assert oversize.head == big[:HEAD_BYTES]
    assert after == b"{}"


def test_an_oversize_line_in_one_read_is_reported_too() -> None:
    items = split([b"x" * 50 + b"\nok\n"], max_line=10)
    assert isinstance(items[0], Oversize) and items[0].size == 50
    assert items[1] == b"ok"


def test_a_line_of_exactly_the_limit_is_accepted() -> None:
    assert split([b"z" * 10 + b"\n"], max_line=10) == [b"z" * 10]


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_any_chunking_gives_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    expected = [line for line in lines if line.strip(b" \t\r\n")]
    assert split(chunks, max_line=64) == expected
