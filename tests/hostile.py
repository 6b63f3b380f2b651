"""Hostile client input, as hypothesis strategies, for the contract of issue 21: whatever a
client sends, the gateway answers with a documented status and code, and nothing it sends
reaches ``/metrics`` or another tenant.

The values are the kinds that broke gateways before: lone surrogates, control characters,
bidi and zero-width marks, non-BMP characters, 100,000-character strings, numbers past
every integer width, NaN and infinities, and type confusion. Bodies are sent as bytes so
that what ``json.dumps`` cannot write reaches the server too: ``NaN``, ``1e999``, a
5,000-digit integer, invalid escapes, and lone surrogates as (invalid) UTF-8.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """A JSON token written verbatim into the body."""

    token: bytes


@dataclass(frozen=True)
class Case:
    """One request: ``texts`` are the client strings in it, which no metric label may show."""

    method: str
    url: str
    content: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    texts: frozenset[str]
    note: str
    names: tuple[str, ...] = ()  # what must be a valid name if the answer is a success
    authorized: bool = True  # False: no key or a wrong one, which must be all that counts
    chunked: bool = False  # sent without a Content-Length

    @property
    def head_bytes(self) -> int:
        """Size of the request line and headers on the wire (roughly)."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def __repr__(self) -> str:  # failing cases get printed; a 100 kB body helps no one
        body = (self.content or b"")[:300]
        head = f"{self.method} {self.url[:300]} ({self.note})"
        return f"{head} headers={self.headers!r:.300} body={body!r}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))


KEY = object()  # as the last step of a path: the hostile text becomes a new object key
ATOMS = (
    "", " ", "\x00", "\n", "\r\n", "\r", "\t", "\x1b[31m", "\x7f", "\x85", "\u2028", "\ud800",
    "\udfff", "\udc00\ud800", "\u202e", "\u2066", "\u200b", "\ufeff", "\uffff", "😀",
    "\U0010ffff", "日本", "é", "e\u0301", "%00", "%0a", "..", ".", "../x", "registry.json",
    "'\"\\", "<b>", "{{x}}", "\\u0000", "(", "[", "\\", "#/x",
)  # fmt: skip
LONG_UNITS = ("a", "\ud800", "😀", "\u202e", "\n", "日本", "(", "\\")
NUMBERS = (
    0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**64), 2**1000, -(2**1000),
    -0.0, 0.5, 5e-324, 1e308, -1e308, 2.5,
)  # fmt: skip
RAW_NUMBERS = tuple(
    Raw(t) for t in (b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1" * 5000, b"1e-999")
)
RAW_STRINGS = tuple(
    Raw(t)
    for t in (b'"\\ud800"', b'"\\udc00\\ud800"', b'"\\u0000"', b'"\\x41"', b'"\\u12"',
              b'"a\x01b"', b'"\xff\xfe"', b'"\xed\xa0\x80"', b'"\xc0\xae"')
)  # fmt: skip
CONFUSED = (
    None, True, [], {}, "1", [["x"]], {"": None},
    Raw(b"[" * 5000 + b"]" * 5000), Raw(b'{"a":' * 5000 + b"1" + b"}" * 5000),  # deep nesting
)  # fmt: skip
RAW_SEGMENTS = (
    "%FF", "%ED%A0%80", "%00", "%0A", "%0D%0A", "%2F", "%2e%2e", "%25", "%u0041", "v3%0A",
    "demo%0A", "%C0%AE", "registry.json", "tenant-a", "fuzz-new",
)  # fmt: skip
HEADER_ATOMS = (b"", b"\x00", b"\xff\xfe", b"\r\n", b"\n", b"\t", b"\x7f", b" ", b"\xed\xa0\x80")


def short_text() -> st.SearchStrategy[str]:
    """One atom, or a mix of atoms and any code points (surrogates included)."""
    chars = st.characters(codec=None, exclude_categories=())
    mixed = st.lists(st.sampled_from(ATOMS) | st.text(chars, max_size=6), min_size=1, max_size=4)
    return st.sampled_from(ATOMS) | mixed.map("".join)


def long_text(sizes: tuple[int, ...] = (1_000, 10_000, 10_000, 100_000)) -> st.SearchStrategy[str]:
    units = st.sampled_from(LONG_UNITS)
    return st.builds(lambda unit, n: unit * (n // len(unit)), units, st.sampled_from(sizes))


def text_value() -> st.SearchStrategy[Any]:
    """For a string field: hostile text, a raw string token, or another type."""
    return st.one_of(
        short_text(), long_text(), st.sampled_from(RAW_STRINGS), st.sampled_from(CONFUSED)
    )


def number_value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(NUMBERS),
        st.sampled_from(RAW_NUMBERS),
        st.sampled_from(CONFUSED),
        short_text(),
    )


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON bytes; ``ascii_only=False`` writes lone surrogates as raw (invalid) UTF-8."""
    raws: list[bytes] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Raw):
            raws.append(node.token)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    data = json.dumps(swap(value), ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    for i, token in enumerate(raws):
        data = data.replace(f'"@@raw{i}@@"'.encode(), token)
    return data


def place(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    """Set ``value`` at ``path``; False when an earlier hostile value replaced the
    container the path goes through."""
    node: Any = body
    for step in path[:-1]:
        if isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return False
    if path[-1] is KEY and isinstance(node, dict):
        node[value] = "x"
    elif isinstance(path[-1], int) and isinstance(node, list):
        node[path[-1] : path[-1] + 1] = [value]  # replaces, or appends to a shorter list
    elif isinstance(path[-1], str) and isinstance(node, dict):
        node[path[-1]] = value
    else:
        return False
    return True


Shapes = dict[str, tuple[dict[str, Any], dict[tuple[Any, ...], str]]]
Body = tuple[bytes, frozenset[str], str]  # JSON bytes, the client text in it, what was done


def mutate(shapes: Shapes, shape: str, changes: list[tuple[Any, ...]], ascii_only: bool) -> Body:
    """A copy of the ``shape`` body with each (path, value) of ``changes`` placed."""
    body = json.loads(json.dumps(shapes[shape][0]))  # draws must not leak into each other
    placed = [(path, value) for path, value in changes if place(body, path, value)]
    texts = frozenset(v for _, v in placed if isinstance(v, str) and v)
    where = ", ".join(f"{'.'.join(map(_step, path))}={value!r:.40}" for path, value in placed)
    return encode(body, ascii_only), texts, f"{shape}: {where}; ascii={ascii_only}"


@st.composite
def mutated_body(draw: st.DrawFn, shapes: Shapes) -> Body:
    """A valid body of one shape with 1-3 of its fields (mostly one) made hostile;
    ``shapes`` maps a shape name to (body, {path: "text" | "number"})."""
    shape = draw(st.sampled_from(sorted(shapes)))
    fields = shapes[shape][1]
    count = min(len(fields), draw(st.sampled_from((1, 1, 1, 2, 3))))
    chosen = draw(st.lists(st.sampled_from(list(fields)), min_size=count, max_size=count,
                           unique=True))  # fmt: skip
    changes = []
    for path in chosen:
        if path[-1] is KEY:
            value = draw(short_text() | long_text())
        else:
            value = draw(text_value() if fields[path] == "text" else number_value())
        changes.append((path, value))
    return mutate(shapes, shape, changes, ascii_only=draw(st.booleans()))


SWEEP = {  # one of each kind, for every field (``sweep``)
    "text": ("a" * 10_000, "\ud800", "日本\r\nX-Evil: 1"),
    "number": (2**63 - 1, 2**63, 2**64, Raw(b"1e999"), Raw(b"NaN")),
}


def sweep(shapes: Shapes) -> list[Body]:
    """Every field of every shape with each ``SWEEP`` value of its kind: the coverage that
    random draws reach only by luck."""
    return [
        mutate(shapes, shape, [(path, value)], ascii_only=True)
        for shape, (_, fields) in sorted(shapes.items())
        for path, kind in fields.items()
        for value in SWEEP["text" if path[-1] is KEY else kind]
    ]


def _step(step: Any) -> str:
    return "<key>" if step is KEY else str(step)


def segment() -> st.SearchStrategy[tuple[str, str]]:
    """(percent-encoded URL piece, the text it carries) for paths and query strings; at
    most 1,000 characters, as client libraries refuse URLs over 64 KiB."""
    encoded = (short_text() | long_text((1_000,))).map(
        lambda t: (quote(t.encode("utf-8", "surrogatepass"), safe=""), t)
    )
    raw = st.sampled_from(RAW_SEGMENTS).map(lambda s: (s, unquote(s, errors="surrogateescape")))
    return raw | encoded


WIRE_VALUE = re.compile(rb"([\x21-\x7e\x80-\xff]([\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?")


def header_value(wire: bool) -> st.SearchStrategy[bytes]:
    """Odd header bytes; ``wire=True`` keeps to what HTTP/1.1 can carry (RFC 9110 field
    values), since a real client library refuses to send the rest."""
    values = st.one_of(
        st.sampled_from(HEADER_ATOMS),
        (short_text() | long_text()).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=40),
    )
    return values.filter(WIRE_VALUE.fullmatch) if wire else values
