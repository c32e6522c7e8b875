"""``get_many`` and ``set_many``: many keys in one round trip (generator operations).

Standalone and Sentinel: one ``MGET``, or one non-transactional pipeline of ``SET … PX``.
Cluster: one command per hash slot (``MGET``, or a small script of ``SET … PX``), sent one
after the other as plain commands: when a node hangs, the first command to it times out,
the breaker opens, and the rest of the call is served by the memory store, so a call costs
at most one socket timeout (redis-py's cluster pipeline would resend each command on its
own and pay one timeout per slot).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .breaker import Gate
from .codec import HEADER_SIZE, MAGIC, PLAIN_JSON, STAMPER, JsonCodec, PickleCodec, pack
from .config import ttl_seconds
from .core import _IMMUTABLE, _KEEP_DECODED, MISSING, TTL, Discard, ServiceCore
from .errors import ConfigurationError
from .keys import MAX_KEY_LENGTH
from .memory import NO_VALUE
from .scripts import DROP_IF_SAME, run_script
from .tags import Tagged, memory_tokens, validate_tags, wrap
from .target import Op, Unavailable, by_slot

__all__ = ["MAX_BATCH", "get_many", "set_many"]

log = logging.getLogger("cache_service")
MAX_BATCH = 10_000  # keys per get_many / set_many call
_PLAIN = MAGIC + bytes([PLAIN_JSON])
_FAST_CODECS = (JsonCodec, PickleCodec)  # both decode codec id 1 as plain orjson

# KEYS: the keys of one slot; ARGV[1]: PX; ARGV[1 + i]: the payload for KEYS[i].
SET_MANY = """
for i, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[i + 1], 'PX', ARGV[1])
end
return #KEYS
"""


def _pipeline_set(client: Any, items: list[tuple[str, bytes]], px: int) -> Any:
    """One non-transactional pipeline of ``SET k v PX px`` (awaitable for asyncio)."""
    pipe = client.pipeline(transaction=False)
    for k, payload in items:
        pipe.set(k, payload, px=px)
    return pipe.execute()


def _full_keys(core: ServiceCore, keys: object) -> dict[str, str]:
    """``{full key: key}`` for ``keys``: each validated, deduplicated, at most MAX_BATCH."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise ConfigurationError(
            f"get_many takes an iterable of str keys, not {type(keys).__name__}")
    names = keys if type(keys) is list else list(keys)
    if len(names) > MAX_BATCH:
        raise ConfigurationError(f"at most {MAX_BATCH} keys per call, got {len(names)}")
    head = core._keys.head
    try:  # the common case at C speed; anything unusual is looked at key by key
        full = {head + k: k for k in names}
        sound = len(full) == len(names) and head not in full and (  # head alone: key ""
            not names or max(map(len, names)) <= MAX_KEY_LENGTH)
    except TypeError:
        sound = False
    if not sound:  # a key to refuse (raises), a str subclass, or duplicates
        full = {core._keys.full(k): k for k in names}
    return full


def get_many(core: ServiceCore, keys: Iterable[str]) -> Op[dict[str, Any]]:
    """``{key: value}`` for the hits among ``keys`` (misses are left out)."""
    full = _full_keys(core, keys)
    found: dict[str, Any] = {}
    if not full:
        return found
    t = core._target
    left = list(full)
    gate = t.gate()
    if gate is Gate.PROBE:
        gate = yield from t.recover()
    if gate is Gate.REDIS:
        groups = by_slot(left) if t.location.kind == "cluster" else [left]
        done = 0
        try:
            for group in groups:
                raws = yield (("execute_command", "MGET", *group) if len(groups) > 1
                              else ("mget", *group))
                yield from _settle(core, full, group, raws, found)
                done += 1
        except Unavailable:
            pass
        if done == len(groups):
            return found
        left = [k for group in groups[done:] for k in group]
    c = core._counters
    for k in left:
        value = core._from_memory(k, MISSING, False, c)
        if value is not MISSING:
            found[full[k]] = value
    return found


def _settle(core: ServiceCore, full: dict[str, str], group: list[str], raws: list[Any],
            found: dict[str, Any]) -> Op[None]:
    """Decode one MGET reply into ``found``: a tight loop for plain JSON payloads, the
    single-key rules (``_from_redis``) for everything else."""
    c = core._counters
    t = core._target
    guard = t.journal.guard_until  # late-write tombstones to check (after a recovery)
    fast = type(core._codec) in _FAST_CODECS and (not guard or t.clock() >= guard)
    loads = orjson.loads
    hits = 0
    discards: list[tuple[str, str | None]] = []
    tagged: list[Tagged] = []
    rest: list[tuple[str, bytes]] = []
    if fast:
        before = len(found)
        for k, raw in zip(group, raws, strict=True):
            # plain JSON of ours (header C5 01 01) decodes here; a list may be an envelope
            if raw is not None:
                if raw[:3] == _PLAIN:
                    try:
                        value = loads(raw[HEADER_SIZE:])
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        if type(value) is not list:
                            found[full[k]] = value
                            continue
                rest.append((k, raw))
        hits = len(found) - before
        misses = len(group) - hits - len(rest)
    else:
        rest = [(k, raw) for k, raw in zip(group, raws, strict=True) if raw is not None]
        misses = len(group) - len(rest)
    for k, raw in rest:
        result = core._from_redis(k, raw, MISSING, False, c)
        if type(result) is Discard:
            discards.append((k, result.why))
        elif type(result) is Tagged:
            tagged.append(result)
        elif result is not MISSING:
            found[full[k]] = result
    c.hits += hits
    c.misses += misses + len(discards)
    if tagged:
        yield from _settle_tagged(core, full, tagged, found)
    if discards:
        for k, why in discards:
            if why is not None:
                t.counters.corrupt += 1
                log.warning("cache_service: discarding %r: %s", k, why)
        with contextlib.suppress(Unavailable):
            yield from t.unlink_keys([k for k, _ in discards])


def _settle_tagged(core: ServiceCore, full: dict[str, str], tagged: list[Tagged],
                   found: dict[str, Any]) -> Op[None]:
    """Check the tokens of every tagged hit with one MGET (tag keys share one slot)."""
    c = core._counters
    tag_keys = list(dict.fromkeys(k for item in tagged for k in core._tag_keys(item.tags)))
    stored = dict(zip(tag_keys, (yield ("mget", *tag_keys)), strict=True))
    for item in tagged:
        if item.current([stored[k] for k in core._tag_keys(item.tags)]):
            result = core._from_redis(item.key, item.plain, MISSING, False, c)
            if result is not MISSING and type(result) is not Discard:
                found[full[item.key]] = result
                continue
        c.misses += 1
        with contextlib.suppress(Unavailable):
            yield (run_script, DROP_IF_SAME, [item.key], [item.raw])


def set_many(core: ServiceCore, mapping: Mapping[str, Any], ttl: TTL = None,
             tags: object = ()) -> Op[None]:
    """Store every ``key: value`` of ``mapping`` for ``ttl``; every value is encoded (and
    every key checked) before anything is written."""
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(
            f"set_many takes a mapping of key -> value, not {type(mapping).__name__}")
    if len(mapping) > MAX_BATCH:
        raise ConfigurationError(f"at most {MAX_BATCH} keys per call, got {len(mapping)}")
    tag_names = validate_tags(tags) if tags else ()
    seconds = core._default_ttl if ttl is None else ttl_seconds(ttl)
    px = max(1, math.ceil(seconds * 1000))
    stamp = STAMPER.next()  # one write: one stamp for all of it
    head, codec, limit = core._keys.full, core._codec, core._max_value_bytes
    items = []
    for key, value in mapping.items():
        k = head(key)
        items.append((k, pack(codec, value, k, limit, stamp), value))
    if not items:
        return
    core._counters.sets += len(items)
    t = core._target
    keys = [k for k, _, _ in items]
    tag_keys = core._tag_keys(tag_names)

    def remote() -> Op[None]:
        pairs = [(k, payload) for k, payload, _ in items]
        if tag_keys:
            tokens = yield from core._tag_tokens(tag_keys, px)
            pairs = [(k, wrap(payload, tag_names, tokens)) for k, payload in pairs]
        if t.location.kind != "cluster":
            yield (_pipeline_set, pairs, px)
            return
        payloads = dict(pairs)
        for group in by_slot(keys):
            yield (run_script, SET_MANY, group, [px, *(payloads[k] for k in group)])

    def local() -> None:
        t.counters.memory_writes += 1
        memory = t.memory
        if tag_keys:
            tokens = memory_tokens(memory, tag_keys, seconds)
            for k, payload, _ in items:
                memory.set(k, wrap(payload, tag_names, tokens), seconds)
            return
        for k, payload, value in items:
            kept = value if type(value) in _IMMUTABLE and len(payload) <= _KEEP_DECODED \
                else NO_VALUE
            memory.set(k, payload, seconds, kept)

    yield from core._write(remote, local, keys=keys)
