"""Sentinel discovery on our own layer, without sockets: the flows driven by scripted
replies, what a reply means, and what the book forgets."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.sentinel import MasterNotFoundError

from cache_service._redis.errors import (
    SentinelsRefused,
    classify_error,
    misconfiguration_message,
)
from cache_service._redis.wire_sentinel import (
    NotNamed,
    SentinelBook,
    SentinelPlan,
    is_primary,
    no_primary,
    primary_flow,
    primary_in,
    replicas_flow,
    replicas_in,
)
from cache_service._redis.wire_sentinel_client import (
    DISCOVER,
    MAX_NODES,
    SentinelWireClient,
    after_failure,
    moved,
    on_primary,
)
from cache_service._redis.wire_sentinel_watch import switched_to
from cache_service._wire import ConnectFailed, ReplyError, WireSettings
from cache_service._wire.errors import HandshakeError
from cache_service.config import Location

PLAN = SentinelPlan("mymaster", (WireSettings(port=26379), WireSettings(port=26380)),
                    WireSettings(password="pw", db=3), 0.3)


def drive(flow: Any, replies: list[object]) -> tuple[list[tuple[str, tuple[Any, ...]]], Any]:
    """Run ``flow`` on scripted replies (an exception is thrown in): the steps, the result."""
    steps = []
    step = next(flow)
    for reply in replies:
        steps.append((step[0].where, step[1]))
        try:
            step = flow.throw(reply) if isinstance(reply, Exception) else flow.send(reply)
        except StopIteration as done:
            return steps, done.value
    raise AssertionError("the flow wants more replies")


def test_the_primary_flow_asks_the_sentinel_then_checks_the_role() -> None:
    steps, found = drive(primary_flow(PLAN, 1), [[b"10.0.0.5", b"6380"], [b"master", 0, []]])
    assert steps == [("127.0.0.1:26380", ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")),
                     ("10.0.0.5:6380", ("ROLE",))]
    assert found == ("10.0.0.5", 6380)
    assert PLAN.node_at(found).password == "pw"
    assert PLAN.node_at(found).db == 3


@pytest.mark.parametrize("replies", [
    [None],  # the service is unknown to this sentinel
    [[b"10.0.0.5", b"6380"], [b"slave", b"10.0.0.6", 6379, b"connected", 1]],  # demoted
    [[b"10.0.0.5", b"6380"], ConnectFailed("10.0.0.5:6380 refused the connection")],
])
def test_a_sentinel_naming_no_live_primary_is_not_believed(replies: list[object]) -> None:
    with pytest.raises(NotNamed):
        drive(primary_flow(PLAN, 0), replies)


def test_replicas_that_are_down_are_skipped() -> None:
    flat = [[b"ip", b"10.0.0.6", b"port", b"6379", b"flags", b"slave"],
            [b"ip", b"10.0.0.7", b"port", b"6379", b"flags", b"s_down,slave"]]
    resp3 = [{b"ip": b"10.0.0.8", b"port": b"6379", b"flags": b"slave"}]
    assert replicas_in(flat) == [("10.0.0.6", 6379)]
    assert replicas_in(resp3) == [("10.0.0.8", 6379)]
    assert drive(replicas_flow(PLAN, 0), [[flat[1]]])[1] is None
    assert primary_in([b"h", b"1"]) == ("h", 1)
    assert primary_in(None) is None
    assert is_primary([b"master", 0, []])
    assert not is_primary([b"sentinel", []])


def test_the_book_forgets_a_failed_address_and_turns_through_replicas() -> None:
    book = SentinelBook()
    book.primary, book.replicas = ("p", 1), [("r", 1), ("r", 2)]
    assert {book.replica(), book.replica()} == {("r", 1), ("r", 2)}
    lost = RedisConnectionError("lost")
    lost.__cause__ = ConnectFailed("gone")
    assert moved(book, ("p", 1), lost) is False
    assert book.primary is None
    assert book.replicas == [("r", 1), ("r", 2)]
    book.primary = ("p", 1)
    assert moved(book, ("p", 1), read_only()) is True  # ask again and send once more
    assert book.primary is None
    book.primary = ("p", 1)
    no_replicas = ReplyError("NOREPLICAS Not enough good replicas to write.")
    refused = RedisConnectionError("x")
    refused.__cause__ = no_replicas
    assert moved(book, ("p", 1), refused) is False
    assert book.primary is None
    wrong_type = RedisConnectionError("x")
    wrong_type.__cause__ = ReplyError("WRONGTYPE Operation against a key")
    book.primary = ("p", 1)
    assert moved(book, ("p", 1), wrong_type) is False
    assert book.primary == ("p", 1)


def test_no_primary_names_each_sentinel_and_what_it_said() -> None:
    error = no_primary(PLAN, {0: NotNamed("does not know 'mymaster'")})
    text = str(error)
    assert "127.0.0.1:26379 - NotNamed: does not know 'mymaster'" in text
    assert "127.0.0.1:26380 - no answer within 0.3s" in text
    assert "pw" not in text


def read_only() -> ReadOnlyError:
    error = ReadOnlyError("You can't write against a read only replica.")
    error.__cause__ = ReplyError("READONLY You can't write against a read only replica.")
    return error


def test_a_call_asks_for_the_primary_and_follows_readonly_once() -> None:
    book = SentinelBook()
    call = ("set", ("k", b"v"), {"px": 10})
    flow = on_primary(book, call)
    assert next(flow) == DISCOVER
    book.primary = ("old", 1)  # what the driver's discovery remembers
    assert flow.send(("old", 1)) == (("old", 1), call)
    assert flow.throw(read_only()) == DISCOVER  # the primary moved: ask again
    assert book.primary is None
    assert flow.send(("new", 2)) == (("new", 2), call)  # sent once more, there
    with pytest.raises(StopIteration) as done:
        flow.send(True)
    assert done.value.value is True


def test_readonly_stands_when_the_sentinels_name_the_same_node() -> None:
    book = SentinelBook()
    book.primary = ("old", 1)
    flow = after_failure(book, ("old", 1), read_only(), ("delete", ("k",), {}))
    assert next(flow) == DISCOVER
    with pytest.raises(RedisConnectionError, match="is now a replica"):
        flow.send(("old", 1))
    lost = RedisConnectionError("lost")
    with pytest.raises(RedisConnectionError, match="lost"):
        next(after_failure(book, ("old", 1), lost, ("get", ("k",), {})))


def test_node_clients_of_addresses_no_longer_named_are_closed_past_the_bound() -> None:
    client = SentinelWireClient(PLAN, lambda address: None)
    client.book.primary = ("primary", 1)
    first = client.node(("primary", 1))
    for port in range(MAX_NODES * 2):  # a node per failover, each at a new address
        client.node(("moved", port))
    assert len(client._nodes) <= MAX_NODES
    assert client.node(("primary", 1)) is first  # the named primary's client is kept
    client.close()


def test_a_switch_message_names_the_new_primary_of_our_service_only() -> None:
    assert switched_to(PLAN, b"mymaster 10.0.0.5 6379 10.0.0.6 6380") == ("10.0.0.6", 6380)
    assert switched_to(PLAN, b"other 10.0.0.5 6379 10.0.0.6 6380") is None
    assert switched_to(PLAN, b"mymaster garbage") is None
    book = SentinelBook()
    book.primary, book.replicas = ("old", 1), [("r", 1)]
    book.switched(("new", 2))
    assert book.primary == ("new", 2)
    assert book.replicas is None


WRONGPASS = ReplyError("WRONGPASS invalid username-password pair or user is disabled.")
NOAUTH = ReplyError("NOAUTH HELLO must be called with the client already authenticated, "
                    "otherwise the HELLO <proto> AUTH <user> <pass> option can be used")
NOPERM = ReplyError("NOPERM User default has no permissions to run the "
                    "'sentinel|get-master-addr-by-name' command")
SENTINEL_LOCATION = Location(kind="sentinel", hosts=(("127.0.0.1", 26379), ("127.0.0.1", 26380)),
                             service_name="mymaster", password="data-secret",
                             sentinel_password="not-this-one")


def refused(reply: ReplyError) -> HandshakeError:
    return HandshakeError(f"127.0.0.1:26379: AUTH refused ({reply.message})", reply)


@pytest.mark.parametrize(("errors", "code"), [
    ({0: refused(WRONGPASS), 1: refused(WRONGPASS)}, "WRONGPASS"),
    ({0: refused(NOAUTH), 1: refused(NOAUTH)}, "NOAUTH"),
    ({0: NOPERM, 1: NOPERM}, "NOPERM"),  # an ACL without the discovery commands
    ({0: refused(WRONGPASS), 1: ConnectFailed("127.0.0.1:26380 refused the connection")},
     "WRONGPASS"),  # a sentinel that is down says nothing
    ({0: refused(WRONGPASS)}, "WRONGPASS"),  # the other one did not answer in time
])
def test_sentinels_refusing_our_credentials_are_a_misconfiguration(
        errors: dict[int, BaseException], code: str) -> None:
    """Every sentinel that answered refused us (WRONGPASS, NOAUTH, NOPERM): a setting to
    fix, named (sentinel_password=), never the password itself; not 'unreachable'."""
    error = no_primary(PLAN, errors)
    assert isinstance(error, SentinelsRefused)
    assert isinstance(error, MasterNotFoundError)  # redis-py's type, as before
    assert error.code == code
    assert classify_error(error, "sentinel") == "misconfigured"
    message = misconfiguration_message(error, SENTINEL_LOCATION)
    assert f"({code})" in message
    assert "sentinel_password" in message
    assert "not-this-one" not in message
    assert "data-secret" not in message


@pytest.mark.parametrize("errors", [
    {},  # no sentinel answered in time
    {0: ConnectFailed("refused"), 1: ConnectFailed("refused")},
    {0: refused(WRONGPASS), 1: NotNamed("does not know 'mymaster'")},  # one knows us
])
def test_other_discovery_failures_stay_outages(errors: dict[int, BaseException]) -> None:
    error = no_primary(PLAN, errors)
    assert not isinstance(error, SentinelsRefused)
    assert classify_error(error, "sentinel") == "outage"
