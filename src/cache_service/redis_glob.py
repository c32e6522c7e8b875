"""Redis' glob (``KEYS``/``SCAN MATCH``) as Redis evaluates it, in polynomial time (pure).

Redis' ``stringmatchlen`` (``src/util.c``) matches BYTES: the UTF-8 of the pattern against the
UTF-8 of the key, so ``?`` and a class ``[...]`` take one byte, not one character (``caf?``
matches no ``café``: its ``é`` is two bytes). Its rules, mirrored here:

- ``*`` any run of bytes; ``?`` one byte; ``\\x`` the byte ``x`` (a ``\\`` ending the pattern
  is itself); any other byte itself.
- ``[...]`` one byte out of a class: ``^`` first negates; ``\\x`` is ``x``; ``a-z`` is a range
  of bytes compared as C ``char`` (signed: bytes >= 0x80 sort below ASCII), ends swapped when
  reversed, and taken whenever a byte is followed by ``-`` and one more byte (``[a-]`` is the
  range ``a``..``]``); a ``]`` first closes an empty class; a class left open runs to the end.
- An empty key matches only the empty pattern and ``*`` (``SCAN`` and ``KEYS`` skip matching
  for ``*`` alone; ``stringmatchlen`` itself refuses an empty key to any other pattern), and a
  pattern whose match needs more than 1000 nested ``*`` (Redis' limit against abusive
  patterns) matches nothing.

Redis walks the pattern recursively (cut short by its ``skipLongerMatches``); here the pattern
is split at its ``*``: the first piece must start the key, the last end it, and each middle
piece is taken at its leftmost place after the previous one. Every piece has a fixed length
(one byte per item), so a key of n bytes costs O(n x pattern length) at worst, all of it in
one ``re`` match (in C) built so that it never backtracks across pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

__all__ = ["Glob", "compile_glob", "escape_glob", "redis_match"]

_SPECIALS = frozenset("*?[]\\")
_NESTING_LIMIT = 1000  # stringmatchlen_impl: ``if (nesting > 1000) return 0;``


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return "".join("\\" + c if c in _SPECIALS else c for c in text)


def _signed(byte: int) -> int:
    """A byte as Redis compares it in a range: a C ``char`` (signed on the platforms it runs)."""
    return byte - 256 if byte >= 128 else byte


def _parse(pattern: bytes) -> list[frozenset[int] | None]:
    """The pattern as items: ``None`` for ``*``, else the set of bytes that one key byte may
    be; the walk follows ``stringmatchlen`` (which parses a pattern the same for any key)."""
    items: list[frozenset[int] | None] = []
    n, i = len(pattern), 0
    every = frozenset(range(256))
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*'
            if not items or items[-1] is not None:
                items.append(None)
        elif c == 0x3F:  # '?'
            items.append(every)
        elif c == 0x5C:  # '\\': escapes the next byte, unless it ends the pattern
            if i + 1 < n:
                i += 1
            items.append(frozenset((pattern[i],)))
        elif c == 0x5B:  # '['
            i += 1
            negate = i < n and pattern[i] == 0x5E  # '^'
            if negate:
                i += 1
            chosen: set[int] = set()
            while True:
                left = n - i
                if left >= 2 and pattern[i] == 0x5C:
                    i += 1
                    chosen.add(pattern[i])
                elif left > 0 and pattern[i] == 0x5D:  # ']'
                    break
                elif left == 0:  # unterminated: the class ends with the pattern
                    i -= 1
                    break
                elif left >= 3 and pattern[i + 1] == 0x2D:  # 'x-y'
                    low, high = sorted((_signed(pattern[i]), _signed(pattern[i + 2])))
                    chosen.update(b for b in range(256) if low <= _signed(b) <= high)
                    i += 2
                else:
                    chosen.add(pattern[i])
                i += 1
            items.append(every - chosen if negate else frozenset(chosen))
        else:
            items.append(frozenset((c,)))
        i += 1
    return items


class Glob:
    """A compiled Redis glob: ``matches(key)`` is what Redis' ``SCAN MATCH`` would say of
    ``key`` (taken as its UTF-8); ``select(keys)`` the keys it would return. Immutable."""

    __slots__ = ("matches", "pattern", "select")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.matches: Callable[[str], bool]
        self.select: Callable[[Iterable[str]], list[str]]
        self.matches, self.select = _build(pattern.encode("utf-8", "surrogatepass"))

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


def _build(raw: bytes) -> tuple[Callable[[str], bool], Callable[[Iterable[str]], list[str]]]:
    """``matches`` and ``select`` of one anchored regex (see ``_joined``): over the key's text
    when the pattern has only whole bytes, else over its UTF-8."""
    if raw == b"*":
        return (lambda key: True), list
    items = _parse(raw)
    stars = sum(1 for item in items if item is None)
    nested = stars - (1 if items and items[-1] is None else 0)
    if nested > _NESTING_LIMIT:  # Redis gives up at that depth: no key matches
        return (lambda key: False), (lambda keys: [])
    pieces: list[list[frozenset[int]]] = [[]]
    for item in items:
        if item is None:
            pieces.append([])
        else:
            pieces[-1].append(item)
    # Only "*" runs match an empty text; Redis gives an empty key to no pattern but "" and "*".
    nonempty = stars > 0 and not any(pieces)
    if all(len(item) == 1 for piece in pieces for item in piece):
        # Whole bytes only: match the key's text itself (UTF-8 is self-synchronising, so a
        # literal's bytes occur in a key's bytes exactly where its text occurs in the text).
        texts = [re.escape(bytes(min(item) for item in piece).decode("utf-8", "surrogatepass"))
                 for piece in pieces]
        text = re.compile(_joined(texts), re.DOTALL).fullmatch
        if nonempty:
            return (lambda key: key != ""), (lambda keys: [k for k in keys if k])
        return ((lambda key: text(key) is not None),
                (lambda keys: [k for k in keys if text(k)]))
    data = re.compile(_joined([_piece(piece) for piece in pieces]).encode("ascii"),
                      re.DOTALL).fullmatch
    return ((lambda key: data(key.encode("utf-8", "surrogatepass")) is not None),
            (lambda keys: [k for k in keys if data(k.encode("utf-8", "surrogatepass"))]))


def _joined(pieces: list[str]) -> str:
    """The regex of pieces joined by ``*``: the first, each middle one at its leftmost place
    (``(?=(?P<pN>.*?P))(?P=pN)``: what a lookahead took is never given back, so no search
    backtracks across pieces), then ``.*`` and the last."""
    middle = "".join(f"(?=(?P<p{n}>.*?{piece}))(?P=p{n})" for n, piece in enumerate(pieces[1:-1]))
    return pieces[0] + middle + (".*" + pieces[-1] if len(pieces) > 1 else "")


def _piece(piece: list[frozenset[int]]) -> str:
    """A fixed-length regex (ASCII source over bytes), one class per item."""
    parts: list[str] = []
    for allowed in piece:
        if not allowed:
            parts.append("(?!)")
        elif len(allowed) == 1:
            parts.append(_byte(next(iter(allowed))))
        else:
            parts.append("[" + "".join(_spans(sorted(allowed))) + "]")
    return "".join(parts)


def _spans(ordered: list[int]) -> list[str]:
    spans: list[str] = []
    low = high = ordered[0]
    for b in ordered[1:]:
        if b == high + 1:
            high = b
            continue
        spans.append(_byte(low) if low == high else f"{_byte(low)}-{_byte(high)}")
        low = high = b
    spans.append(_byte(low) if low == high else f"{_byte(low)}-{_byte(high)}")
    return spans


def _byte(b: int) -> str:
    return f"\\x{b:02x}"


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> Glob:
    """The compiled ``pattern`` (cached: the last 512 patterns)."""
    return Glob(pattern)


def redis_match(pattern: str, key: str) -> bool:
    """Whether Redis' ``SCAN MATCH pattern`` would return ``key`` (for SQL functions)."""
    return compile_glob(pattern).matches(key)
