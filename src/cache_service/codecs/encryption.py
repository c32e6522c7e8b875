"""AES-256-GCM at rest: a keyring whose first key encrypts and every key decrypts (rotation),
each key named in the payload by a 4-byte id derived from it. The payload's header (codec
byte and stamp), the key id and the Redis key are the authenticated data: a value moved to
another key, or with its header changed, fails authentication like a tampered one."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
from collections.abc import Iterable
from typing import Any

from cache_service.codec import HEADER_SIZE, MIN_KEY_DISTINCT, VIEW_FROM, CorruptPayload
from cache_service.codecs._extras import require
from cache_service.errors import ConfigurationError

__all__ = ["KEY_BYTES", "Keyring", "parse_keys"]

KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
_OVERHEAD = KEY_ID_BYTES + NONCE_BYTES + 16  # key id, nonce, GCM tag
_NONCE = HEADER_SIZE + KEY_ID_BYTES  # where a sealed payload's nonce starts
_SEALED = _NONCE + NONCE_BYTES  # and its ciphertext


def key_id(key: bytes) -> bytes:
    """A key's public id: 4 bytes of HMAC-SHA256 under the key (it does not reveal it)."""
    return hmac.new(key, b"cache_service:key-id", hashlib.sha256).digest()[:KEY_ID_BYTES]


def _one_key(item: object, setting: str) -> bytes:
    """A 32-byte key from bytes, or text in hex (64 characters) or base64."""
    key: bytes | None = None
    if isinstance(item, (bytes, bytearray)):
        key = bytes(item)
    elif isinstance(item, str):
        text = item.strip()
        try:
            key = bytes.fromhex(text) if len(text) == 2 * KEY_BYTES else \
                base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (ValueError, binascii.Error):
            key = None
    if key is None or len(key) != KEY_BYTES or len(set(key)) < MIN_KEY_DISTINCT:
        raise ConfigurationError(
            f"{setting}: an encryption key is {KEY_BYTES} random bytes, or them in hex "
            f"({2 * KEY_BYTES} characters) or base64 (e.g. secrets.token_hex(32))")
    return key


def parse_keys(keys: object, setting: str = "encryption_keys") -> list[bytes]:
    """``keys`` (one key, a list of keys, or text of keys separated by commas or spaces) as
    raw keys, the writing one first; ConfigurationError naming ``setting`` otherwise."""
    items: Iterable[object]
    if isinstance(keys, str):
        items = keys.replace(",", " ").split()
    elif isinstance(keys, (bytes, bytearray)):
        items = [keys]
    elif isinstance(keys, (list, tuple)):
        items = keys
    else:
        raise ConfigurationError(f"{setting}: give a key or a list of keys (the first one "
                                 f"encrypts), got {type(keys).__name__}")
    found = [_one_key(item, setting) for item in items]
    if not found:
        raise ConfigurationError(f"{setting}: no key given")
    return found


class Keyring:
    """Encrypts with the first key, decrypts with any; counts what it refuses."""

    def __init__(self, keys: list[bytes]) -> None:
        aead = require("cryptography.hazmat.primitives.ciphers.aead", "encryption_keys")
        self._invalid_tag: Any = require("cryptography.exceptions", "encryption_keys").InvalidTag
        ciphers = [(key_id(k), aead.AESGCM(k)) for k in keys]
        self._write_id, self._write = ciphers[0]
        self._by_id = dict(reversed(ciphers))
        self.auth_failures = itertools.count()  # tampered, or written under another key
        self.unknown_keys = itertools.count()  # a key id this service does not hold

    def __repr__(self) -> str:
        return f"Keyring({len(self._by_id)} keys)"

    @staticmethod
    def _aad(head: bytes, kid: bytes, key: str) -> bytes:
        k = key.encode("utf-8", "surrogatepass")
        return b"".join((head, kid, len(k).to_bytes(4, "big"), k))

    def seal(self, head: bytes, body: bytes, key: str) -> bytes:
        """``body`` encrypted: key id, nonce, ciphertext and tag."""
        nonce = os.urandom(NONCE_BYTES)
        kid = self._write_id
        return b"".join((kid, nonce, self._write.encrypt(nonce, body, self._aad(head, kid, key))))

    def open(self, raw: bytes, key: str) -> bytes:
        """The body of the whole sealed payload ``raw`` (header, key id, nonce, ciphertext and
        tag), or CorruptPayload: removed when it fails authentication, left alone when another
        key (one this service lacks) wrote it. Reads a large ciphertext in place (no copy)."""
        if len(raw) < HEADER_SIZE + _OVERHEAD:
            raise CorruptPayload("truncated encrypted payload")
        kid = raw[HEADER_SIZE:_NONCE]
        cipher = self._by_id.get(kid)
        if cipher is None:
            next(self.unknown_keys)
            raise CorruptPayload(f"encrypted under key id {kid.hex()}, which this service "
                                 "does not hold", remove=False)
        view = memoryview(raw) if len(raw) >= VIEW_FROM else raw
        k = key.encode("utf-8", "surrogatepass")
        try:  # the header and key id precede the nonce: the authenticated data's first part
            body: bytes = cipher.decrypt(raw[_NONCE:_SEALED], view[_SEALED:], b"".join(
                (raw[:_NONCE], len(k).to_bytes(4, "big"), k)))
        except self._invalid_tag:
            next(self.auth_failures)
            raise CorruptPayload("encrypted payload failed authentication") from None
        return body
