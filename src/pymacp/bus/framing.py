"""NDJSON framing: split a byte stream into lines, with a maximum line length.

:class:`LineSplitter` is sans-IO: feed it whatever a read returned, get complete lines back.
A line is everything before a ``\\n``, byte for byte (a ``\\r`` before it is kept: JSON
treats it as whitespace, and forwarding stays exact). Lines holding only whitespace are
skipped, as the kernel does.

A line longer than the limit is not buffered: the splitter keeps its first
:data:`HEAD_BYTES` (enough to find a request id), discards the rest up to the next newline,
and reports :class:`Oversize`. The stream stays usable; the line after it arrives intact.
That is the fix for the kernel, which closes the connection instead.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_BYTES = 4096
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Oversize:
    """A line longer than the limit was dropped; ``head`` is its beginning."""

    size: int  # bytes seen (the whole line once it ended, or so far at end of stream)
    head: bytes


class LineSplitter:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already known to hold no newline
        self._dropping: Oversize | None = None  # the oversize line being skipped, if any

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        """Lines completed by ``data``, in order, each without its newline."""
        out: list[bytes | Oversize] = []
        start = 0
        if self._dropping is not None:
            start = self._skip(data, out)
            if start < 0:
                return out
        self._buffer += memoryview(data)[start:] if start else data
        buffer = self._buffer
        begin = 0
        while True:
            end = buffer.find(b"\n", max(begin, self._scanned))
            if end < 0:
                break
            if end - begin > self.max_line:
                out.append(Oversize(end - begin, bytes(buffer[begin : begin + HEAD_BYTES])))
            else:
                line = bytes(buffer[begin:end])
                if line.strip(_WHITESPACE):
                    out.append(line)
            begin = end + 1
            self._scanned = begin
        if begin:
            del buffer[:begin]
        self._scanned = len(buffer)
        if len(buffer) > self.max_line:
            # no newline yet and already too long: stop buffering, skip to the newline
            self._dropping = Oversize(len(buffer), bytes(buffer[:HEAD_BYTES]))
            buffer.clear()
            self._scanned = 0
        return out

    def _skip(self, data: bytes, out: list[bytes | Oversize]) -> int:
        """Skip the rest of an oversize line; the offset after its newline, or -1 if it goes on."""
        assert self._dropping is not None
        end = data.find(b"\n")
        if end < 0:
            self._dropping = Oversize(self._dropping.size + len(data), self._dropping.head)
            return -1
        out.append(Oversize(self._dropping.size + end, self._dropping.head))
        self._dropping = None
        return end + 1

    def end(self) -> list[bytes | Oversize]:
        """At end of stream: the last line if it had no newline (a peer may omit the final one)."""
        if self._dropping is not None:
            dropped, self._dropping = self._dropping, None
            return [dropped]
        line = bytes(self._buffer)
        self._buffer.clear()
        self._scanned = 0
        return [line] if line.strip(_WHITESPACE) else []

    @property
    def buffered(self) -> int:
        return len(self._buffer)
