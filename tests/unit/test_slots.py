"""The cluster routing core without sockets: key slots, slot maps from CLUSTER SHARDS/SLOTS
replies written by hand, MOVED/ASK, and batches split by node with their redirects."""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.crc import key_slot as redis_py_key_slot

from cache_service._redis.slots import (
    SLOTS,
    Batch,
    Node,
    Redirect,
    SlotMap,
    TopologyError,
    Unserved,
    crc16,
    group_by,
    is_readonly,
    join_replies,
    key_slot,
    parse_shards,
    parse_slots,
    read_topology,
    redirect_of,
    slot_of_command,
    split_keys,
)
from cache_service._redis.wire_topology import _Answers
from cache_service._wire import ReplyError

A, B, C = Node("10.0.0.1", 7000), Node("10.0.0.2", 7001), Node("10.0.0.3", 7002)


def three() -> SlotMap:
    return SlotMap([(0, 5460, A, []), (5461, 10922, B, []), (10923, 16383, C, [])])


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(("key", "slot"), [
    ("foo", 12182), ("bar", 5061), (b"{user1000}.following", 3443),
    ("{user1000}.followers", 3443), ("foo{}{bar}", key_slot("foo{}{bar}")),
])
def test_key_slot_known_values(key: str | bytes, slot: int) -> None:
    assert key_slot(key) == slot


def test_hash_tags() -> None:
    assert key_slot("{tag}a") == key_slot("{tag}b") == key_slot("tag")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS  # empty tag: whole key
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")  # up to the first }
    assert key_slot("foo{bar}{zap}") == key_slot("bar")  # the first tag only
    assert key_slot("no}tag{") == crc16(b"no}tag{") % SLOTS


def test_key_slot_agrees_with_redis_py_on_random_keys() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        key = bytes(rng.choice(b"ab{}:xyz0123") for _ in range(rng.randint(0, 12)))
        assert key_slot(key) == redis_py_key_slot(key), key


def test_slot_map_and_moved() -> None:
    slots = three()
    assert slots.node_for(0) == A
    assert slots.node_for(16383) == C
    assert slots.primaries == (A, B, C)
    assert slots.complete
    slots.moved(100, C)
    assert slots.node_for(100) == C
    assert slots.node_for(101) == A
    partial = SlotMap([(0, 100, A, [])])
    assert partial.node_for(101) is None
    assert not partial.complete
    with pytest.raises(TopologyError):
        SlotMap([(0, SLOTS, A, [])])


def test_parse_shards_resp2_and_resp3() -> None:
    def node(ip: str, port: int, role: str, health: str = "online", endpoint: str = "") -> Any:
        return [b"id", b"x", b"port", port, b"ip", ip.encode(), b"endpoint",
                endpoint.encode() or ip.encode(), b"role", role.encode(), b"health",
                health.encode()]

    resp2 = [
        [b"slots", [0, 5460], b"nodes", [node("10.0.0.1", 7000, "master"),
                                         node("10.0.0.9", 7009, "replica")]],
        [b"slots", [5461, 10922], b"nodes", [node("10.0.0.2", 7001, "master"),
                                             node("10.0.0.8", 7008, "replica", "fail")]],
        [b"slots", [10923, 12000, 12001, 16383], b"nodes", [node("10.0.0.3", 7002, "master")]],
    ]
    slots = parse_shards(resp2, "127.0.0.1")
    assert slots.primaries == (A, B, C)
    assert slots.complete
    assert slots.replicas[A] == (Node("10.0.0.9", 7009),)
    assert slots.replicas[B] == ()
    resp3 = [{"slots": [0, 16383], "nodes": [{"port": 7000, "ip": "10.0.0.1", "endpoint": "?",
                                               "role": "master", "health": "online"}]}]
    assert parse_shards(resp3, "h").primaries == (A,)
    no_ip = [{"slots": [0, 16383], "nodes": [{"port": 7000, "endpoint": "", "role": "master"}]}]
    assert parse_shards(no_ip, "seed").primaries == (Node("seed", 7000),)
    tls = [{"slots": [0, 16383], "nodes": [{"port": 7000, "tls-port": 8000, "ip": "h",
                                             "role": "master"}]}]
    assert parse_shards(tls, "s", tls=True).primaries == (Node("h", 8000),)
    with pytest.raises(TopologyError):
        parse_shards([[b"slots", [0, b"x"], b"nodes", []]], "h")


@pytest.mark.parametrize("failed_first", [True, False])
def test_parse_shards_after_a_failover_names_the_online_master(failed_first: bool) -> None:
    """Valkey lists a shard's failed old primary as ``master`` beside the promoted one, in
    either order: the online one serves the slots (the failed one, were it alone)."""
    old = {"port": 7000, "ip": "10.0.0.1", "role": "master", "health": "fail"}
    new = {"port": 7001, "ip": "10.0.0.2", "role": "master", "health": "online"}
    nodes = [old, new] if failed_first else [new, old]
    assert parse_shards([{"slots": [0, 16383], "nodes": nodes}], "h").primaries == (B,)
    alone = [{"slots": [0, 16383], "nodes": [old]}]
    assert parse_shards(alone, "h").primaries == (A,)


def test_parse_slots() -> None:
    reply = [[0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.9", 7009, b"id9"]],
             [5461, 10922, [b"10.0.0.2", 7001, b"id2"]],
             [10923, 16383, [b"", 7002, b"id3"]]]
    slots = parse_slots(reply, "10.0.0.3")
    assert slots.primaries == (A, B, C)
    assert slots.replicas[A] == (Node("10.0.0.9", 7009),)
    with pytest.raises(TopologyError):
        parse_slots([[0]], "h")


def test_read_topology_falls_back_to_cluster_slots() -> None:
    flow = read_topology("10.0.0.1")
    assert next(flow) == ("CLUSTER", "SHARDS")
    assert flow.send(ReplyError("ERR unknown subcommand 'SHARDS'")) == ("CLUSTER", "SLOTS")
    with pytest.raises(StopIteration) as done:
        flow.send([[0, 16383, [b"10.0.0.1", 7000]]])
    assert done.value.value.primaries == (A,)
    flow = read_topology("h")
    next(flow)
    flow.send(ReplyError("ERR unknown subcommand"))
    with pytest.raises(TopologyError):
        flow.send(ReplyError("ERR This instance has cluster support disabled"))


def test_redirects() -> None:
    assert redirect_of("MOVED 3999 10.0.0.2:7001", "x") == Redirect(False, 3999, B)
    assert redirect_of("ASK 3999 10.0.0.2:7001", "x") == Redirect(True, 3999, B)
    assert redirect_of("MOVED 1 :7001", "10.0.0.2") == Redirect(False, 1, B)  # the same host
    assert redirect_of("MOVED 1 [::1]:7001", "x") == Redirect(False, 1, Node("::1", 7001))
    assert redirect_of("ERR wrong", "x") is None
    assert redirect_of("MOVED nonsense", "x") is None


def run(batch: Batch, replies_of: Any) -> list[object]:
    """Drive ``batch`` as the clients do, with ``replies_of(send)`` standing for a node."""
    sends = batch.first()
    rounds = 0
    while sends:
        rounds += 1
        redirects = []
        for send in sends:
            redirects += batch.settle(send, replies_of(send))
        sends = batch.retry(redirects)
    assert rounds <= 2
    return batch.replies


def test_batch_is_one_pipeline_per_node_in_order() -> None:
    keys = [f"k{i}" for i in range(40)]
    requests = [(key_slot(k), ("GET", k)) for k in keys]
    batch = Batch(three(), requests)
    sends = batch.first()
    assert {s.node for s in sends} == {A, B, C}
    assert sorted(p for s in sends for p in s.positions) == list(range(40))
    assert all(not s.asking for s in sends)
    assert run(Batch(three(), requests), lambda s: [c[1] for c in s.commands]) == keys


def test_batch_follows_moved_once_and_patches_the_map() -> None:
    slots = three()
    slot = key_slot("k1")
    owner = slots.node_for(slot)
    target = C if owner != C else A
    calls: list[Node] = []

    def node(send: Any) -> list[object]:
        calls.append(send.node)
        if send.node == owner:
            return [ReplyError(f"MOVED {slot} {target.host}:{target.port}")]
        return [b"v"]

    assert run(Batch(slots, [(slot, ("GET", "k1"))]), node) == [b"v"]
    assert calls == [owner, target]
    assert slots.node_for(slot) == target


def test_batch_follows_ask_with_asking_and_keeps_the_map() -> None:
    slots = three()
    slot = key_slot("k1")
    owner = slots.node_for(slot)
    seen: list[Any] = []

    def node(send: Any) -> list[object]:
        seen.append(send.wire_commands())
        if not send.asking:
            return [ReplyError(f"ASK {slot} 10.0.0.3:7002"), b"other"][:len(send.commands)]
        return [b"OK", b"v"]

    assert run(Batch(slots, [(slot, ("GET", "k1"))]), node) == [b"v"]
    assert seen[1] == [("ASKING",), ("GET", "k1")]
    assert slots.node_for(slot) == owner


def test_a_second_redirect_is_left_as_the_error_reply() -> None:
    slot = key_slot("k1")
    moved = ReplyError(f"MOVED {slot} 10.0.0.2:7001")
    assert run(Batch(three(), [(slot, ("GET", "k1"))]), lambda s: [moved]) == [moved]


def test_unserved_slot_and_group_by() -> None:
    with pytest.raises(Unserved):
        Batch(SlotMap([(0, 10, A, [])]), [(11, ("GET", "x"))]).first()
    assert group_by(["a", "bb", "c", "dd"], len) == {1: [0, 2], 2: [1, 3]}


def test_a_multi_key_command_split_by_slot_and_joined_back() -> None:
    keys = [f"k{i}" for i in range(30)] + ["{t}a", "{t}b"]
    requests = split_keys("MGET", keys)
    assert len(requests) > 10
    assert all(len({key_slot(k) for k in command[1:]}) == 1 for _, command in requests)
    assert ["{t}a", "{t}b"] in [command[1:] for _, command in requests]
    replies = [[f"v-{k}" for k in command[1:]] for _, command in requests]
    assert join_replies("MGET", requests, replies, keys) == [f"v-{k}" for k in keys]
    unlinks = split_keys("UNLINK", keys)
    assert join_replies("UNLINK", unlinks, [len(c) - 1 for _, c in unlinks], keys) == 32


def test_the_slot_a_raw_command_is_routed_by() -> None:
    assert slot_of_command(("GET", "k1")) == key_slot("k1")
    assert slot_of_command(("EVALSHA", "sha", 2, "{a}x", "{a}y", "arg")) == key_slot("a")
    assert slot_of_command(("EVAL", "return 1", 0, "arg")) is None
    assert slot_of_command(("PING",)) is None


def test_batch_tells_of_moved_and_readonly_and_routes_its_first_round() -> None:
    """``notice`` hears each MOVED (before the map is patched) and each READONLY reply (as
    None); ``route`` picks the first round's node (a replica for reads)."""
    slots = three()
    slot = key_slot("k1")
    owner = slots.node_for(slot)
    replica = Node("10.0.0.9", 7009)
    heard: list[object] = []

    def node(send: Any) -> list[object]:
        if send.node == replica:
            return [ReplyError(f"MOVED {slot} {owner.host}:{owner.port}"),
                    ReplyError("READONLY You can't write against a read only replica.")]
        return [b"v"] * len(send.commands)

    batch = Batch(slots, [(slot, ("GET", "k1")), (slot, ("SET", "k1", "v"))], heard.append,
                  route=lambda _: replica)
    replies = run(batch, node)
    assert heard == [None, Redirect(False, slot, owner)]
    assert replies[0] == b"v"
    assert is_readonly(replies[1])
    assert not is_readonly(ReplyError("MOVED 1 h:1"))


def test_a_map_read_prefers_a_primarys_complete_map() -> None:
    """``_Answers``: a complete map from a node that is a primary in it settles the read;
    otherwise the best so far waits for the others (complete before partial)."""
    complete, partial = three(), SlotMap([(0, 100, A, [])])
    answers = _Answers(3)
    answers.add((Node("10.0.0.9", 7009), partial, None))
    answers.add((B, None, "refused"))
    assert answers.best is partial
    assert not answers.settled
    answers.add((Node("10.0.0.8", 7008), complete, None))
    assert answers.best is complete
    assert answers.settled  # every node answered
    first = _Answers(5)
    first.add((A, complete, None))
    assert first.settled
    assert first.errors == []
