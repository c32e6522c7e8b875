"""Signing keys: every key that signs pickles, explicit or derived from an application secret,
must be one nobody can guess; a weak one is a startup error naming the setting, on every path
a key can come in by (the codec, Django, cachelib, Flask-Caching, its factory, dogpile, the
environment). A payload signed with another key is a miss."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_service import CacheService, ConfigurationError, PickleCodec
from cache_service.integrations._common import ENV_KEY, derive_key

from .helpers import unique
from .servers import RedisServer

django = pytest.importorskip("django")
pytest.importorskip("flask_caching")
pytest.importorskip("dogpile.cache")
from django.conf import settings as django_settings  # noqa: E402
from dogpile.cache import make_region  # noqa: E402
from flask import Flask  # noqa: E402
from flask_caching import Cache  # noqa: E402

if not django_settings.configured:
    django_settings.configure(SECRET_KEY="signing-tests-secret-key-0123456789abcdef",
                              USE_TZ=True, CACHES={})

from cache_service.integrations.cachelib import CachelibCache  # noqa: E402
from cache_service.integrations.django import DjangoCache  # noqa: E402

STRONG_KEY = "7f3a9c1e5b2d8f4a"  # 16 bytes, 11 different
STRONG_SECRET = "n3Qx-8vKp_2LmZr7Tw0yHs5Jd1FbGc4E"  # 32 characters

# Explicit keys: under 16 bytes, or fewer than 5 different bytes, or not bytes/text at all.
WEAK_KEYS: list[Any] = [
    "", "dev", "secret", "changeme", "0123456789abcde", b"\x01\x02\x03\x04\x05" * 3,
    b"\0" * 32, "a" * 64, "abcd" * 8, "\ud800" * 16, 1234567890123456789, ["k"] * 16,
]
# Application secrets: under 32 characters, or fewer than 5 different ones.
WEAK_SECRETS: list[Any] = [
    "", "dev", "secret", "change-me", "0123456789abcde", "n3Qx-8vKp_2LmZr7Tw0yHs5Jd1FbGc4",
    os.urandom(31), b"\0" * 32, "a" * 64, "abcd" * 16, 12345,
]


def _ids(values: list[Any]) -> list[str]:
    return [f"{type(v).__name__}{len(v) if hasattr(v, '__len__') else ''}-{i}"
            for i, v in enumerate(values)]


def _refused(make: Callable[[], object], setting: str, value: Any) -> None:
    """``make()`` raises a ConfigurationError naming ``setting`` and not showing ``value``."""
    with pytest.raises(ConfigurationError) as info:
        make()
    message = str(info.value)
    assert setting in message, message
    if isinstance(value, str) and len(value) >= 12:
        assert value not in message  # a secret never reaches an error (nor a log)


# -- the rule itself, searched ----------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=15), st.text(max_size=15),
                 st.lists(st.sampled_from(b"ab\0\xff"), min_size=16, max_size=80).map(bytes),
                 st.text(alphabet="xyz\u00e9", min_size=16, max_size=80)))
def test_any_short_or_repetitive_key_is_refused(key: bytes | str) -> None:
    """Under 16 bytes (UTF-8 for text) or under 5 different byte values: always refused."""
    if isinstance(key, str) and len(key.encode("utf-8", "surrogatepass")) >= 16 and \
            len(set(key.encode("utf-8", "surrogatepass"))) >= 5:
        return  # "é" is two bytes: such text can pass, rightly
    with pytest.raises(ConfigurationError, match="signing_key"):
        PickleCodec(signing_key=key)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=31), st.binary(max_size=31),
                 st.text(alphabet="abcd", min_size=32, max_size=200)))
def test_any_short_or_repetitive_secret_derives_nothing(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        derive_key(secret, "test")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=64).filter(lambda k: len(set(k)) >= 5))
def test_strong_keys_sign_and_verify(key: bytes) -> None:
    codec = PickleCodec(signing_key=key)
    codec_id, body = codec.encode(complex(1, 2), "k")
    assert codec.decode(codec_id, body, "k") == complex(1, 2)


def test_derived_keys_depend_on_secret_and_purpose() -> None:
    one = derive_key(STRONG_SECRET, "a")
    assert one == derive_key(STRONG_SECRET.encode(), "a")
    assert len({one, derive_key(STRONG_SECRET, "b"), derive_key(STRONG_SECRET[::-1], "a")}) == 3


# -- every path a key comes in by ---------------------------------------------------------------
@pytest.mark.parametrize("key", WEAK_KEYS, ids=_ids(WEAK_KEYS))
def test_weak_explicit_keys_are_refused_on_every_path(
        key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    _refused(lambda: PickleCodec(signing_key=key), "signing_key", key)
    _refused(lambda: CacheService(unique(), url="memory://", codec=PickleCodec(key)),
             "signing_key", key)
    _refused(lambda: DjangoCache("memory://", {"OPTIONS": {"SIGNING_KEY": key}}),
             "OPTIONS['SIGNING_KEY']", key)
    _refused(lambda: CachelibCache("memory://", signing_key=key), "signing_key", key)
    _refused(lambda: make_region().configure(
        "cache_service", arguments={"url": "memory://", "signing_key": key}),
        "arguments['signing_key']", key)
    if isinstance(key, str) and "\ud800" not in key:  # the environment holds text only
        monkeypatch.setenv(ENV_KEY, key)
        _refused(lambda: CachelibCache("memory://"), f"${ENV_KEY}", key)
        _refused(lambda: make_region().configure("cache_service", arguments={"url": "memory://"}),
                 f"${ENV_KEY}", key)


@pytest.mark.parametrize("secret", WEAK_SECRETS, ids=_ids(WEAK_SECRETS))
def test_weak_secrets_are_refused_on_every_path(
        secret: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    _refused(lambda: derive_key(secret, "any"), "SECRET_KEY", secret)
    monkeypatch.setattr(django_settings, "SECRET_KEY", secret)
    if secret:  # Django itself refuses an empty SECRET_KEY; then no key is set at all
        _refused(lambda: DjangoCache("memory://", {}), "SECRET_KEY", secret)
    else:
        _refused(lambda: DjangoCache("memory://", {}), "signing key is needed", secret)
    for make in _flask_makers(secret):
        _refused(make, "SECRET_KEY", secret)


def _flask_makers(secret: Any, **config: Any) -> list[Callable[[], object]]:
    """Flask-Caching building our cache through its factory ``CACHE_TYPE``."""

    def build(cache_type: str) -> Callable[[], object]:
        def make() -> object:
            app = Flask(unique("flask"))
            app.config.update(SECRET_KEY=secret, CACHE_TYPE=cache_type,
                              CACHE_REDIS_URL="memory://", **config)
            cache = Cache(app)
            return app.extensions["cache"][cache]
        return make

    return [build("cache_service.integrations.flask.make_cache")]


def test_explicit_keys_win_over_a_derived_one_and_a_weak_one_is_never_skipped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Flask: CACHE_SIGNING_KEY, then the environment, then SECRET_KEY. A weak SECRET_KEY
    does not matter when an explicit key is set; a weak explicit key is refused even when a
    strong SECRET_KEY could have been used."""
    monkeypatch.delenv(ENV_KEY, raising=False)
    for make in _flask_makers("dev", CACHE_SIGNING_KEY=STRONG_KEY):
        assert isinstance(make(), CachelibCache)
    for make in _flask_makers(STRONG_SECRET, CACHE_SIGNING_KEY="dev"):
        _refused(make, "CACHE_SIGNING_KEY", "dev")
    monkeypatch.setenv(ENV_KEY, STRONG_KEY)
    for make in _flask_makers("dev"):
        assert isinstance(make(), CachelibCache)
    monkeypatch.setattr(django_settings, "SECRET_KEY", "dev")
    DjangoCache("memory://", {"OPTIONS": {"SIGNING_KEY": STRONG_KEY}})


# -- strong keys work; another key is a miss ----------------------------------------------------
def test_strong_keys_work_on_every_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.setattr(django_settings, "SECRET_KEY", STRONG_SECRET)
    value = {"when": complex(1, 2)}  # not JSON: pickled and signed
    django_cache = DjangoCache("memory://", {"KEY_PREFIX": unique()})
    django_cache.set("k", value)
    assert django_cache.get("k") == value
    for cache in [CachelibCache("memory://", key_prefix=unique(), signing_key=STRONG_KEY),
                  *(make() for make in _flask_makers(STRONG_SECRET,
                                                     CACHE_KEY_PREFIX=unique()))]:
        assert isinstance(cache, CachelibCache)
        cache.set("k", value)
        assert cache.get("k") == value
    region = make_region().configure("cache_service", arguments={
        "url": "memory://", "signing_key": STRONG_KEY.encode(), "prefix": unique()})
    region.set("k", value)
    assert region.get("k") == value


@pytest.mark.parametrize("make_codec", [
    lambda secret: PickleCodec(derive_key(secret, "django-cache")),
    lambda secret: PickleCodec(secret[:16]),
], ids=["derived", "explicit"])
def test_a_payload_signed_with_another_key_is_a_miss(
        redis_server: RedisServer, make_codec: Callable[[str], PickleCodec]) -> None:
    prefix = unique()
    writer = CacheService(prefix, url=redis_server.url, codec=make_codec(STRONG_SECRET))
    reader = CacheService(prefix, url=redis_server.url, codec=make_codec(STRONG_SECRET[::-1]))
    try:
        writer.set("p", complex(3, 4))
        assert writer.get("p") == complex(3, 4)
        assert reader.get("p") is None
        # a forged pickle under our header, signed with a key an attacker guessed: a miss,
        # and the payload never reaches pickle.loads (it would raise here if it did)
        guessed = PickleCodec(b"guessed-key-0123456789")
        forged = _Boom()
        reader.set("f", "placeholder")
        full = reader.full_key("f")
        with redis_server.client() as raw:
            payload = raw.get(full)
            assert payload is not None
            _, body = guessed.encode(forged, full)
            raw.set(full, payload[:2] + bytes([3]) + payload[3:11] + body)
        assert reader.get("f") is None
        assert not _Boom.loaded
    finally:
        writer.clear_all()
        writer.close()
        reader.close()


class _Boom:
    """Marks it if it is ever unpickled."""

    loaded = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Boom._load, ())

    @staticmethod
    def _load() -> _Boom:
        _Boom.loaded = True
        return _Boom()


def test_the_forged_payload_would_run_code() -> None:
    """What the test above guards against: unpickling ``_Boom`` runs ``_Boom._load``."""
    _Boom.loaded = False
    pickle.loads(pickle.dumps(_Boom()))
    assert _Boom.loaded
    _Boom.loaded = False
