"""The sans-I/O RESP core (``cache_service._wire.protocol``) without sockets.

What it searches for: requests that encode to something other than their arguments, arguments
that slip through encoding, replies matched to the wrong request when the byte stream is split
anywhere (every byte boundary, random chunks), with pushes interleaved and callers cancelled;
exceptions other than ``ProtocolError`` from any bytes at all; a handshake that hides what the
server refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_service._wire.errors import (
    ConnectionLost,
    EncodeError,
    HandshakeError,
    ProtocolError,
    ReplyError,
)
from cache_service._wire.protocol import (
    NEED_DATA,
    Pending,
    RespCore,
    encode_command,
    encode_pipeline,
    handshake,
)
from cache_service._wire.settings import WireSettings

# -- encoding ------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=["Cs"]))
_args = st.one_of(st.binary(), _text, st.integers(), st.floats(allow_nan=False))


def _as_bytes(arg: object) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, float):
        return repr(arg).encode()
    return str(arg).encode()


@given(st.lists(_args, min_size=1, max_size=8))
def test_a_request_encodes_to_its_arguments(args: list[object]) -> None:
    reader = hiredis.Reader()  # a request is a RESP array of bulk strings: hiredis reads it back
    reader.feed(encode_command(args))  # type: ignore[arg-type]
    assert reader.gets() == [_as_bytes(arg) for arg in args]
    assert reader.gets() is False


@given(st.lists(st.lists(_args, min_size=1, max_size=4), min_size=1, max_size=5))
def test_a_pipeline_is_its_requests_back_to_back(commands: list[list[object]]) -> None:
    reader = hiredis.Reader()
    reader.feed(encode_pipeline(commands))  # type: ignore[arg-type]
    for command in commands:
        assert reader.gets() == [_as_bytes(arg) for arg in command]


_bad = st.one_of(
    st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(), st.text(), max_size=1),
    st.binary().map(bytearray), st.just(object()), st.sets(st.integers(), max_size=2),
    st.text().map(lambda t: t + "\ud800"),  # a lone surrogate has no UTF-8 form
)


@given(st.lists(_args, max_size=4), _bad, st.data())
def test_arguments_that_cannot_be_encoded_are_refused_with_a_type_error(
    args: list[object], bad: object, data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(args)))
    args.insert(position, bad)
    with pytest.raises(EncodeError) as caught:
        encode_command(["SET", *args])
    assert isinstance(caught.value, TypeError)
    assert f"argument {position + 1}" in str(caught.value)
    with pytest.raises(EncodeError):
        encode_pipeline([["GET", "k"], ["SET", *args]])


def test_an_empty_request_is_refused() -> None:
    with pytest.raises(EncodeError, match="command name"):
        encode_command([])


# -- replies: a small RESP writer for the tests ---------------------------------------------------

Reply = object  # bytes | int | None | str (simple) | ReplyError | list | dict | float


def resp(value: object, *, v3: bool = True) -> bytes:
    """RESP bytes of ``value`` (RESP3 types when ``v3``)."""
    if value is None:
        return b"_\r\n" if v3 else b"$-1\r\n"
    if isinstance(value, ReplyError):
        return b"-" + value.message.encode() + b"\r\n"
    if isinstance(value, bool):
        return (b"#t\r\n" if value else b"#f\r\n") if v3 else b":%d\r\n" % value
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, float):
        return b",%r\r\n" % value if v3 else resp(repr(value).encode(), v3=False)
    if isinstance(value, str):
        return b"+" + value.encode() + b"\r\n"
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, dict):
        body = b"".join(resp(k, v3=v3) + resp(v, v3=v3) for k, v in value.items())
        return (b"%%%d\r\n" % len(value) if v3 else b"*%d\r\n" % (2 * len(value))) + body
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(resp(item, v3=v3) for item in value)
    raise TypeError(value)


def parsed(value: object, *, v3: bool = True) -> object:
    """What the core hands back for ``value``."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, float) and not v3:
        return repr(value).encode()
    if isinstance(value, bool) and not v3:
        return int(value)
    if isinstance(value, list):
        return [parsed(item, v3=v3) for item in value]
    if isinstance(value, dict) and v3:
        return {parsed(k, v3=v3): parsed(v, v3=v3) for k, v in value.items()}
    if isinstance(value, dict):
        return [parsed(item, v3=v3) for pair in value.items() for item in pair]
    return value


_codes = st.sampled_from(["ERR", "WRONGTYPE", "OOM", "NOPERM", "BUSY", "LOADING", "READONLY",
                          "MOVED 3999 127.0.0.1:7001", "ASK 1 h:2", "NOSCRIPT", "EXECABORT"])
_leaf = st.one_of(
    st.binary(max_size=40), st.integers(-(2**63), 2**63 - 1), st.none(),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=10),
    st.builds(lambda code, text: ReplyError(f"{code} {text}"), _codes,
              st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
)
_reply = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.binary(max_size=8), inner, max_size=3),
    ),
    max_leaves=12,
)


class Script:
    """Requests (how many replies each expects, whether cancelled), pushes between replies,
    and the byte stream the server sends for them."""

    def __init__(self, requests: list[tuple[list[object], bool]],
                 pushes: dict[int, list[bytes]], v3: bool) -> None:
        self.requests = requests
        self.pushes = pushes
        self.v3 = v3
        stream = []
        index = 0
        for replies, _ in requests:
            for reply in replies:
                for push in pushes.get(index, []):
                    stream.append(b">2\r\n" + resp(b"invalidate") + resp([push]))
                stream.append(resp(reply, v3=v3))
                index += 1
        self.stream = b"".join(stream)

    def __repr__(self) -> str:
        return f"Script({self.requests!r}, pushes={self.pushes!r}, v3={self.v3}, {self.stream!r})"

    def run(self, chunks: Sequence[bytes]) -> None:
        seen_pushes: list[list[object]] = []
        core = RespCore(seen_pushes.append)
        pending = []
        for replies, cancelled in self.requests:
            request = Pending(expected=len(replies))
            core.enqueue(request)
            if cancelled:
                core.cancel(request)
            pending.append(request)
        for chunk in chunks:
            core.receive(chunk)
        assert not core.pending, "every reply matched a request"
        for request, (replies, cancelled) in zip(pending, self.requests, strict=True):
            if cancelled:
                assert request.result is NEED_DATA, "a cancelled request's reply is dropped"
                continue
            want = [parsed(r, v3=self.v3) for r in replies]
            got = request.result if len(replies) > 1 else [request.result]
            assert _same(got, want)
        expected = [[b"invalidate", [key]] for index in sorted(self.pushes)
                    for key in self.pushes[index]]
        assert seen_pushes == expected


def _same(got: object, want: object) -> bool:
    if isinstance(want, float):
        return isinstance(got, float) and (got == want or math.isclose(got, want))
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            _same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            _same(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


@st.composite
def scripts(draw: st.DrawFn, v3: bool | None = None) -> Script:
    proto3 = draw(st.booleans()) if v3 is None else v3
    requests = draw(st.lists(
        st.tuples(st.lists(_reply, min_size=1, max_size=3), st.booleans()),
        min_size=1, max_size=6))
    total = sum(len(replies) for replies, _ in requests)
    pushes = draw(st.dictionaries(st.integers(0, total - 1),
                                  st.lists(st.binary(max_size=6), min_size=1, max_size=2),
                                  max_size=3)) if proto3 else {}
    return Script(requests, pushes, proto3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scripts())
def test_replies_split_at_every_byte_boundary_reach_their_requests(script: Script) -> None:
    stream = script.stream
    script.run([stream])
    for cut in range(1, len(stream)):
        script.run([stream[:cut], stream[cut:]])
    script.run([stream[i:i + 1] for i in range(len(stream))])


@given(scripts(), st.lists(st.integers(1, 64), min_size=1))
def test_replies_in_random_chunks_reach_their_requests(script: Script, sizes: list[int]) -> None:
    stream, chunks, at = script.stream, [], 0
    while at < len(stream):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(stream[at:at + size])
        at += size
    script.run(chunks)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.lists(st.integers(1, 32), min_size=1, max_size=8),
       st.integers(0, 4))
def test_random_bytes_raise_nothing_but_protocol_error(
    junk: bytes, sizes: list[int], requests: int
) -> None:
    core = RespCore(lambda message: None)
    for _ in range(requests):
        core.enqueue(Pending())
    at, broken = 0, False
    while at < len(junk):
        size = sizes[at % len(sizes)]
        try:
            core.receive(junk[at:at + size])
        except ProtocolError:
            broken = True
            break
        at += size
    if broken:  # once broken, it stays broken: nothing after garbage is trusted
        with pytest.raises(ProtocolError):
            core.receive(b"+OK\r\n")


@given(scripts(), st.binary(min_size=1, max_size=30))
def test_replies_before_garbage_are_delivered_then_the_core_breaks(
    script: Script, junk: bytes
) -> None:
    garbage = b"?" + junk  # not a RESP type byte
    core = RespCore()
    requests = [Pending(expected=len(replies)) for replies, _ in script.requests]
    for request in requests:
        core.enqueue(request)
    core.enqueue(Pending())
    with pytest.raises(ProtocolError, match="not RESP"):
        core.receive(script.stream + garbage)
    assert all(request.result is not NEED_DATA for request in requests)


def test_a_reply_nobody_asked_for_breaks_the_core() -> None:
    core = RespCore()
    with pytest.raises(ProtocolError, match="no request"):
        core.receive(b"+OK\r\n")


def test_pushes_never_match_a_request() -> None:
    seen: list[list[object]] = []
    core = RespCore(seen.append)
    request = Pending()
    core.enqueue(request)
    core.receive(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n")
    assert request.result is NEED_DATA
    assert seen == [[b"invalidate", [b"k"]]]
    core.receive(b"$1\r\nv\r\n")
    assert request.result == b"v"


def test_closing_fails_what_is_in_flight_and_refuses_more() -> None:
    core = RespCore()
    kept, dropped = Pending(), Pending()
    core.enqueue(kept)
    core.enqueue(dropped)
    core.cancel(dropped)
    error = ConnectionLost("gone")
    assert core.close(error) == [kept]
    assert kept.result is error
    assert dropped.result is NEED_DATA
    with pytest.raises(ConnectionLost):
        core.enqueue(Pending())


def test_earliest_deadline_is_the_smallest_in_flight() -> None:
    core = RespCore()
    assert core.earliest_deadline() is None
    for deadline in (5.0, 3.0, 9.0):
        core.enqueue(Pending(deadline=deadline))
    assert core.earliest_deadline() == 3.0


@given(_codes, st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
def test_an_error_reply_carries_its_code(code: str, text: str) -> None:
    core = RespCore()
    request = Pending()
    core.enqueue(request)
    core.receive(b"-" + f"{code} {text}".encode() + b"\r\n")
    assert isinstance(request.result, ReplyError)
    assert request.result.code == code.split(maxsplit=1)[0]
    assert request.result.message == f"{code} {text}"


def test_an_error_reply_without_a_code_is_err() -> None:
    assert ReplyError("something went wrong").code == "ERR"


# -- the handshake, driven with scripted replies ---------------------------------------------------


def _drive(settings_: WireSettings, answers: list[list[object]]) -> tuple[list[object], int]:
    """Run the handshake against scripted replies; the batches it sent and its result."""
    flow = handshake(settings_)
    sent = [next(flow)]
    try:
        for replies in answers:
            sent.append(flow.send(replies))
    except StopIteration as done:
        return sent, int(done.value)
    raise AssertionError("the handshake wanted more replies")


def test_hello_carries_auth_and_setname_and_select_goes_with_it() -> None:
    s = WireSettings(username="app", password="pw", client_name="svc", db=3, protocol=3)
    sent, version = _drive(s, [[{b"proto": 3}, b"OK"]])
    assert sent == [[["HELLO", 3, "AUTH", "app", "pw", "SETNAME", "svc"], ["SELECT", 3]]]
    assert version == 3


def test_a_password_without_a_user_is_a_plain_auth_before_hello() -> None:
    """As redis-py sends it: a server with no password refuses it, so a password it does not
    expect is named (``HELLO 3 AUTH default pw`` would be accepted by a nopass user)."""
    s = WireSettings(password="pw", db=2)
    sent, version = _drive(s, [[b"OK", {b"proto": 2}, b"OK"]])
    assert sent == [[["AUTH", "pw"], ["HELLO", 2], ["SELECT", 2]]]
    assert version == 2
    nopass = ReplyError("ERR AUTH <password> called without any password configured for the "
                        "default user. Are you sure your configuration is correct?")
    with pytest.raises(HandshakeError) as caught:
        _drive(s, [[nopass, {b"proto": 2}, b"OK"]])
    assert caught.value.reply == nopass


def test_an_old_server_without_hello_gets_auth_then_setname() -> None:
    s = WireSettings(password="pw", client_name="svc", db=1)
    unknown = ReplyError("ERR unknown command 'HELLO'")
    sent, version = _drive(s, [[b"OK", unknown, ReplyError("NOAUTH Authentication required.")],
                               [b"OK", b"OK", b"OK"]])
    assert sent[1] == [["AUTH", "pw"], ["CLIENT", "SETNAME", "svc"], ["SELECT", 1]]
    assert version == 2


@pytest.mark.parametrize(
    ("settings_", "reply", "says"),
    [
        (WireSettings(password="s3cret"), "WRONGPASS invalid username-password pair or user is "
         "disabled.", "authentication failed for user 'default'"),
        (WireSettings(username="app", password="s3cret"), "WRONGPASS invalid username-password "
         "pair", "authentication failed for user 'app'"),
        (WireSettings(), "NOAUTH HELLO must be called with the client already authenticated",
         "requires a password and none was given"),
        (WireSettings(protocol=3), "NOPROTO sorry, this protocol version is not supported",
         "does not support RESP3"),
        (WireSettings(protocol=3), "ERR unknown command 'HELLO'", "cannot speak RESP3"),
    ],
)
def test_a_refused_handshake_says_what_to_fix(
    settings_: WireSettings, reply: str, says: str
) -> None:
    with pytest.raises(HandshakeError, match=says) as caught:
        _drive(settings_, [[ReplyError(reply)]])
    assert "s3cret" not in str(caught.value)


def test_a_refused_select_names_the_db() -> None:
    with pytest.raises(HandshakeError, match="SELECT 99"):
        _drive(WireSettings(db=99), [[{b"proto": 2}, ReplyError("ERR DB index is out of range")]])
