"""Redis Cluster routing without I/O: key slots, the slot map, redirects, batches split by node.

The cluster clients of ``wire_cluster.py`` drive what is here with their connections; tests
drive it with replies written by hand. ``key_slot`` is CRC16 (XMODEM) of the key, or of its
hash tag (the part between the first ``{`` and the next ``}`` when not empty), modulo 16384.
A ``SlotMap`` is read from ``CLUSTER SHARDS`` (Redis 7+, Valkey), else ``CLUSTER SLOTS``;
``read_topology`` is that exchange as a generator. A MOVED reply patches one slot of the map
(``SlotMap.moved``); an ASK reply is followed once, with ``ASKING``, and changes nothing.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["SLOTS", "Batch", "Node", "Redirect", "Send", "SlotMap", "TopologyError", "Unserved",
           "crc16", "group_by", "is_readonly", "join_replies", "key_slot", "parse_shards",
           "parse_slots", "read_topology", "redirect_in", "redirect_of", "slot_of_command",
           "split_keys"]

SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with (C, in binascii)."""
    return crc_hqx(data, 0)


def key_slot(key: bytes | str | memoryview) -> int:
    """The hash slot of ``key``: of its hash tag ``{...}`` when it has a non-empty one."""
    data = key.encode() if isinstance(key, str) else bytes(key)
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return crc_hqx(data, 0) % SLOTS


@dataclass(frozen=True)
class Node:
    """A cluster node's address; ``name`` (``host:port``) is how callers and SCAN name it."""

    host: str
    port: int

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class TopologyError(Exception):
    """A node answered the topology request with something that is not a slot map."""


class SlotMap:
    """Which primary (and replicas) serve each of the 16384 slots.

    Slots nobody serves map to None. ``moved`` rebinds one slot in place: a list item
    assignment, atomic for the threads and tasks that read the map concurrently.
    """

    def __init__(self, ranges: Sequence[tuple[int, int, Node, Sequence[Node]]]) -> None:
        self._owner: list[Node | None] = [None] * SLOTS
        replicas: dict[Node, tuple[Node, ...]] = {}
        for start, end, primary, copies in ranges:
            if not 0 <= start <= end < SLOTS:
                raise TopologyError(f"slot range {start}-{end} outside 0-{SLOTS - 1}")
            self._owner[start:end + 1] = [primary] * (end - start + 1)
            replicas.setdefault(primary, tuple(copies))
        self.replicas = replicas
        self._known = frozenset((*replicas, *(n for copies in replicas.values() for n in copies)))
        self._primaries: tuple[Node, ...] | None = None

    def knows(self, node: Node) -> bool:
        """Whether ``node`` was in the map as read (a primary or a replica)."""
        return node in self._known

    def node_for(self, slot: int) -> Node | None:
        """The primary serving ``slot`` (None: no node does)."""
        return self._owner[slot]

    def moved(self, slot: int, node: Node) -> None:
        """``slot`` is served by ``node`` now (a MOVED reply said so)."""
        self._owner[slot] = node
        self._primaries = None

    @property
    def primaries(self) -> tuple[Node, ...]:
        """Every primary serving a slot, in slot order."""
        found = self._primaries
        if found is None:
            found = self._primaries = tuple(dict.fromkeys(n for n in self._owner if n))
        return found

    @property
    def complete(self) -> bool:
        """Whether every slot is served."""
        return None not in self._owner


class Redirect(NamedTuple):
    """A MOVED or ASK error reply: ``slot`` is (for good / for this request) on ``node``."""

    ask: bool
    slot: int
    node: Node


def _address(endpoint: str, default_host: str) -> Node:
    host, _, port = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return Node(host if host and host != "?" else default_host, int(port))


def redirect_of(message: str, default_host: str) -> Redirect | None:
    """The redirect an error reply's message (``MOVED 3999 10.0.0.1:6381``) carries, or None
    when it is another error. An empty host means the node that answered (``default_host``)."""
    code, _, rest = message.partition(" ")
    if code not in ("MOVED", "ASK"):
        return None
    slot_text, _, endpoint = rest.partition(" ")
    try:
        return Redirect(code == "ASK", int(slot_text), _address(endpoint.strip(), default_host))
    except ValueError:
        return None


def is_readonly(reply: object) -> bool:
    """Whether an error reply is READONLY: the node written to is a replica now."""
    return isinstance(reply, Exception) and str(getattr(reply, "message", reply)).startswith(
        "READONLY")


def redirect_in(reply: object, default_host: str) -> Redirect | None:
    """The redirect an error reply (an exception value with the server's ``message``) is."""
    if not isinstance(reply, Exception):
        return None
    return redirect_of(str(getattr(reply, "message", reply)), default_host)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(value: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat list of name/value pairs, with text names."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    items = list(value)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _shard_node(fields: dict[str, Any], default_host: str, tls: bool) -> Node | None:
    port = fields.get("tls-port") if tls else fields.get("port")
    if port is None:
        port = fields.get("port", fields.get("tls-port"))
    if port is None:
        return None
    host = _text(fields.get("endpoint") or b"")
    if host in ("", "?"):
        host = _text(fields.get("ip") or b"") or default_host
    return Node(host, int(port))


def _health_rank(fields: dict[str, Any]) -> int:
    """How much a node claiming to be its shard's primary is believed: online first."""
    return 0 if _text(fields.get("health", b"online")) == "online" else 1


def parse_shards(reply: Any, default_host: str, tls: bool = False) -> SlotMap:
    """The slot map of a ``CLUSTER SHARDS`` reply (replicas that are not online left out).

    After a failover a shard lists its old primary too, still as ``master`` but with health
    ``fail``, before or after the promoted one (Valkey): the online master is the primary."""
    ranges: list[tuple[int, int, Node, list[Node]]] = []
    try:
        for shard in reply:
            fields = _fields(shard)
            bounds = [int(b) for b in fields.get("slots", [])]
            masters: list[tuple[int, Node]] = []
            replicas: list[Node] = []
            for raw in fields.get("nodes", []):
                node_fields = _fields(raw)
                node = _shard_node(node_fields, default_host, tls)
                if node is None:
                    continue
                if _text(node_fields.get("role", b"")) == "master":
                    masters.append((_health_rank(node_fields), node))
                elif _text(node_fields.get("health", b"online")) == "online":
                    replicas.append(node)
            primary = min(masters, key=lambda found: found[0])[1] if masters else None
            if primary is not None:
                ranges += [(bounds[i], bounds[i + 1], primary, replicas)
                           for i in range(0, len(bounds) - 1, 2)]
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise TopologyError(f"not a CLUSTER SHARDS reply: {exc}") from exc
    return SlotMap(ranges)


def parse_slots(reply: Any, default_host: str) -> SlotMap:
    """The slot map of a ``CLUSTER SLOTS`` reply."""
    ranges: list[tuple[int, int, Node, list[Node]]] = []
    try:
        for entry in reply:
            start, end, *nodes = entry
            found = [Node(_text(n[0]) or default_host, int(n[1])) for n in nodes]
            found = [Node(default_host if n.host == "?" else n.host, n.port) for n in found]
            if found:
                ranges.append((int(start), int(end), found[0], found[1:]))
    except (TypeError, ValueError, IndexError) as exc:
        raise TopologyError(f"not a CLUSTER SLOTS reply: {exc}") from exc
    return SlotMap(ranges)


def read_topology(host: str, tls: bool = False,
                  ) -> Generator[tuple[str, ...], object, SlotMap]:
    """Ask one node for the slot map: yields a command, is sent its reply (an exception
    instance for an error reply). ``CLUSTER SHARDS`` first, ``CLUSTER SLOTS`` where it is
    unknown (Redis 6). An error reply to both raises ``TopologyError``."""
    reply = yield ("CLUSTER", "SHARDS")
    if not isinstance(reply, Exception):
        return parse_shards(reply, host, tls)
    reply = yield ("CLUSTER", "SLOTS")
    if isinstance(reply, Exception):
        raise TopologyError(f"{host}: {reply}")
    return parse_slots(reply, host)


def group_by(items: Sequence[Any], key_of: Any) -> dict[Any, list[int]]:
    """The positions of ``items`` grouped by ``key_of(item)`` (a slot, a node), groups in
    the order first seen: a batch split into per-slot or per-node requests whose replies are
    put back in place by position."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key_of(item), []).append(i)
    return groups


class Send(NamedTuple):
    """One pipeline to one node: ``commands`` (each after an ``ASKING`` when ``asking``),
    standing for the batch's requests at ``positions``."""

    node: Node
    commands: list[Sequence[Any]]
    positions: list[int]
    asking: bool = False

    def wire_commands(self) -> list[Sequence[Any]]:
        """What goes on the wire: the commands, each preceded by ``ASKING`` for an ASK."""
        if not self.asking:
            return self.commands
        return [c for command in self.commands for c in (("ASKING",), command)]


class Unserved(Exception):
    """A slot no node serves (the slot map is incomplete: a failover is under way)."""


class Batch:
    """Requests routed by slot: one ``Send`` per node (a per-node pipeline), then one more
    round for the requests a node redirected (MOVED patches the map, ASK does not), then done.
    ``notice`` hears of each MOVED and each READONLY reply (None): signs of a stale map.
    ``route`` picks the node of a slot's first round (default: its primary; reads from
    replicas pick a replica).

    The driver runs ``first()``'s sends, gives each one's replies (in ``Send.commands``
    order, error replies as values) to ``settle``, runs what that returns (if anything) and
    settles again; ``replies`` then holds every request's reply in the order given (a
    redirect after the retry stays there as an error reply).
    """

    def __init__(self, slot_map: SlotMap, requests: Sequence[tuple[int, Sequence[Any]]],
                 notice: Callable[[Redirect | None], None] | None = None,
                 route: Callable[[int], Node | None] | None = None) -> None:
        self.map = slot_map
        self.requests = requests
        self._notice = notice
        self._route = route or slot_map.node_for
        self.replies: list[object] = [None] * len(requests)
        self._round = 0

    def first(self) -> list[Send]:
        """The first round: the requests grouped by the node serving their slot."""
        owner = self._route
        groups: dict[Node, list[int]] = {}
        for i, (slot, _) in enumerate(self.requests):
            node = owner(slot)
            if node is None:
                raise Unserved(f"no cluster node serves slot {slot} (a failover is under way)")
            groups.setdefault(node, []).append(i)
        return [Send(node, [self.requests[i][1] for i in where], where)
                for node, where in groups.items()]

    def settle(self, send: Send, replies: Sequence[object]) -> list[tuple[int, Redirect]]:
        """Keep ``send``'s replies; the redirects among them as ``(position, redirect)``."""
        if send.asking:
            replies = replies[1::2]
        found: list[tuple[int, Redirect]] = []
        for position, reply in zip(send.positions, replies, strict=True):
            self.replies[position] = reply
            redirect = redirect_in(reply, send.node.host)
            if redirect is not None:
                found.append((position, redirect))
            elif self._notice is not None and is_readonly(reply):
                self._notice(None)
        return found

    def retry(self, redirects: Sequence[tuple[int, Redirect]]) -> list[Send]:
        """The second round: each redirected request once more, on the node named (after
        the first round only; MOVED rebinds its slot in the map)."""
        self._round += 1
        if self._round > 1 or not redirects:
            return []
        groups: dict[tuple[Node, bool], list[int]] = {}
        for position, redirect in redirects:
            if not redirect.ask:
                if self._notice is not None:
                    self._notice(redirect)
                self.map.moved(redirect.slot, redirect.node)
            groups.setdefault((redirect.node, redirect.ask), []).append(position)
        return [Send(node, [self.requests[i][1] for i in where], where, ask)
                for (node, ask), where in groups.items()]


def slot_of_command(args: Sequence[Any]) -> int | None:
    """The slot a raw command is routed by: its first key (a script's first key; none for
    a script without keys or a command without arguments)."""
    name = str(args[0]).upper() if args else ""
    if name in ("EVAL", "EVALSHA"):
        return key_slot(args[3]) if len(args) > 3 and int(args[2]) > 0 else None
    return key_slot(args[1]) if len(args) > 1 else None


def split_keys(name: str, keys: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """``name keys...`` (MGET, UNLINK, EXISTS...) as one command per slot, keys in their
    order within each."""
    groups: dict[int, list[Any]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return [(slot, [name, *group]) for slot, group in groups.items()]


def join_replies(name: str, requests: Sequence[tuple[int, Sequence[Any]]],
                 replies: Sequence[Any], keys: Sequence[Any]) -> Any:
    """One reply from the per-slot replies of ``split_keys`` (no error reply among them): a
    sum (UNLINK, EXISTS...), or MGET's values in the order of ``keys``."""
    if name != "MGET":
        return sum(int(r) for r in replies)
    found: dict[Any, object] = {}
    for (_, command), values in zip(requests, replies, strict=True):
        found.update(zip(command[1:], values, strict=True))
    return [found[key] for key in keys]
