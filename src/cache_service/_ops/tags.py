"""Tags: invalidate every value written with a tag, in every process (pure, no I/O).

Design: **one random token per tag, checked on read** (the per-tag version scheme of
FusionCache and BentoCache, with random tokens instead of counters or clocks).

* A tag's state is one small string key, ``cs::tag:{prefix}::{tag}``, holding a random token
  (our header + 16 hex digits). The ``{prefix}`` braces are a Cluster hash tag: every tag key
  of a prefix lives in one slot, so reading or dropping any number of them is one command.
* A tagged write first reads the tokens of its tags, creating missing ones (one script,
  ``TOKENS``), then stores the value with those tokens in its payload: codec byte with the
  ``TAGGED`` bit set, then a small tag section, then the codec body.
* A read of a tagged value fetches its tags' tokens (one ``MGET``) and serves the value only
  if every token is still the one it was written with. A missing tag key means "invalidated".
* ``invalidate_tags(*tags)`` UNLINKs the tag keys: O(1) in the number of tagged values. The
  values themselves stay until their TTL (or until a read finds them dead and removes them).
* Tokens are random, so a tag key that was dropped and created again never matches a value
  written before: no clock, no counter to keep, no race between a write and an invalidation
  (a write that read the old token stores a value that is dead on arrival).
* Tag keys carry a TTL a little longer than the longest-lived value written with them
  (``PEXPIRE ... GT`` on every tagged write), so per-tag state expires with its values.
* Untagged values are untouched: their payload is byte for byte what it was, and a read of one
  costs nothing more (the tagged form is recognised only when the plain codec refuses it).
* While Redis is out, the memory store holds tag tokens under the same keys, so the very same
  rules apply there; an invalidation is a delete of tag keys, journaled like any delete, and
  replayed on Redis on recovery.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from cache_service._host.memory_store import FallbackStore
from cache_service.codec import HEADER_SIZE, MAGIC
from cache_service.errors import ConfigurationError
from cache_service.keys import NAMESPACE, encodable, validate_text

__all__ = [
    "MAX_INVALIDATE",
    "MAX_TAGS",
    "TAGGED",
    "TOKENS",
    "Tagged",
    "drop_memory_tokens",
    "is_tagged",
    "memory_tokens",
    "open_tagged",
    "tag_key",
    "tag_ttl_ms",
    "validate_tags",
    "wrap",
]

TAGGED = 0x80  # set in the payload's codec byte
MAX_TAGS = 32  # per value
MAX_INVALIDATE = 10_000  # per invalidate_tags call
MAX_TAG_LENGTH = 1024
TOKEN_HEAD = MAGIC + b"t"  # tag keys hold our header, so ownership-checked unlinks see them
TAG_MARGIN_MS = 5000  # tag keys outlive their values by this much
TOKEN_LOCK = threading.Lock()  # memory-store token updates vs invalidations, per process

# KEYS: tag keys; ARGV[1]: PX for the tag keys; ARGV[1 + i]: a fresh token for KEYS[i].
# Returns the current token of each tag, creating missing ones; extends their TTLs (never
# shortens them). A foreign non-string at a tag key reads as a token no value carries.
TOKENS = """
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.pcall('GET', k)
  if type(v) == 'table' then
    out[i] = '-'
  elseif not v then
    redis.call('SET', k, ARGV[i + 1], 'PX', ARGV[1])
    out[i] = ARGV[i + 1]
  else
    redis.call('PEXPIRE', k, ARGV[1], 'GT')
    out[i] = v
  end
end
return out
"""


def validate_tags(tags: object, limit: int = MAX_TAGS) -> tuple[str, ...]:
    """``tags`` as a tuple of distinct non-empty str (a single str is one tag), at most
    ``limit`` of them."""
    if isinstance(tags, str):
        tags = (tags,)
    if not isinstance(tags, Iterable) or isinstance(tags, (bytes, bytearray, dict)):
        raise ConfigurationError(f"tags must be an iterable of str, not {type(tags).__name__}")
    out: dict[str, None] = {}
    for tag in tags:
        out[validate_text(tag, "each of tags", MAX_TAG_LENGTH)] = None
    if len(out) > limit:
        raise ConfigurationError(f"at most {limit} tags per call, got {len(out)}")
    return tuple(out)


def tag_key(prefix: str, tag: str) -> str:
    """Where ``tag``'s token lives: ``cs::tag:{prefix}::{tag}`` (one slot per prefix).

    No prefix is empty, so ``cs::`` never starts a cache key: tag keys cannot meet user keys,
    and pattern invalidation (``cs:{prefix}::...``) never sees them.
    """
    return f"{NAMESPACE}:tag:{{{prefix}}}::{tag}"


def new_token() -> bytes:
    """A fresh tag token (header + 16 random hex digits)."""
    return TOKEN_HEAD + os.urandom(8).hex().encode()


def tag_ttl_ms(value_px: int) -> int:
    """The TTL a tag key needs so that it outlives a value stored for ``value_px``."""
    return value_px + TAG_MARGIN_MS


def wrap(payload: bytes, tags: tuple[str, ...], tokens: list[bytes]) -> bytes:
    """The tagged form of a plain payload (same stamp and body; tags and tokens added)."""
    meta = orjson.dumps([list(tags), [t.decode("latin-1") for t in tokens]])
    return b"".join((payload[:2], bytes([payload[2] | TAGGED]), payload[3:HEADER_SIZE],
                     len(meta).to_bytes(4, "big"), meta, payload[HEADER_SIZE:]))


def is_tagged(raw: bytes) -> bool:
    """Whether ``raw`` is a tagged payload of ours."""
    return len(raw) >= HEADER_SIZE + 4 and raw[:2] == MAGIC and raw[2] & TAGGED != 0


class Tagged:
    """A tagged payload read from a store: its tags, their tokens, and the plain payload."""

    __slots__ = ("key", "plain", "raw", "tags", "tokens")

    def __init__(self, key: str, raw: bytes, tags: list[str], tokens: list[bytes],
                 plain: bytes) -> None:
        self.key = key
        self.raw = raw
        self.tags = tags
        self.tokens = tokens
        self.plain = plain

    def current(self, stored: list[Any]) -> bool:
        """Whether every tag still holds the token this value was written with."""
        return len(stored) == len(self.tokens) and all(
            s == t for s, t in zip(stored, self.tokens, strict=True))


def open_tagged(key: str, raw: bytes) -> Tagged | None:
    """Parse a tagged payload; ``None`` if it is malformed (then it is corrupt). Its tags
    must be what ``validate_tags`` allows (1 to ``MAX_TAGS``), so that a hostile payload can
    make no request a valid write could not (e.g. an ``MGET`` with no keys)."""
    try:
        start = HEADER_SIZE + 4
        size = int.from_bytes(raw[HEADER_SIZE:start], "big")
        if len(raw) < start + size:
            return None
        meta = orjson.loads(raw[start:start + size])
        if type(meta) is not list or len(meta) != 2:
            return None
        tags, tokens = meta
        if type(tags) is not list or type(tokens) is not list or len(tags) != len(tokens) \
                or not 0 < len(tags) <= MAX_TAGS or len(set(map(str, tags))) != len(tags) \
                or not all(_sound_tag(t) for t in tags):
            return None
        encoded = [t.encode("latin-1") for t in tokens]  # AttributeError if not a str
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
        return None
    plain = b"".join((raw[:2], bytes([raw[2] & ~TAGGED & 0xFF]), raw[3:HEADER_SIZE],
                      raw[start + size:]))
    return Tagged(key, raw, tags, encoded, plain)


def _sound_tag(tag: object) -> bool:
    """Whether ``tag`` is one ``validate_tags`` would take."""
    return type(tag) is str and 0 < len(tag) <= MAX_TAG_LENGTH and encodable(tag)


def memory_tokens(memory: FallbackStore, keys: list[str], seconds: float) -> list[bytes]:
    """The memory store's tokens for tag ``keys``, creating missing ones; each tag entry is
    kept at least ``seconds`` (plus the margin) from now. Under ``TOKEN_LOCK``, so that an
    invalidation (``drop_memory_tokens``) cannot fall between reading a token and re-storing
    it (which would bring an invalidated token back)."""
    tokens = []
    keep = seconds + TAG_MARGIN_MS / 1000
    with TOKEN_LOCK:
        for k in keys:
            found = memory.lookup(k)
            token = found[0] if found is not None else new_token()
            memory.set(k, token, keep if found is None else max(keep, memory.remaining(k)))
            tokens.append(token)
    return tokens


def drop_memory_tokens(drop: Callable[[], int]) -> int:
    """Run ``drop`` (the memory store's delete of tag keys) under ``TOKEN_LOCK``."""
    with TOKEN_LOCK:
        return drop()


def stored_tokens(memory: FallbackStore, keys: list[str]) -> list[bytes | None]:
    """The memory store's current tokens for tag ``keys`` (``None``: missing)."""
    out: list[bytes | None] = []
    for k in keys:
        found = memory.lookup(k)
        out.append(None if found is None else found[0])
    return out
