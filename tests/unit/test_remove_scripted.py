"""Key removal operations (``_ops.remove``) over a scripted driver: standalone and cluster."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cache_service._ops.remove import (
    SCAN_COUNT,
    UNLINK_OWNED,
    scan_unlink,
    unlink_keys,
    unlink_owned,
)
from cache_service._ops.requests import Call, Scan, Script, Unlink
from cache_service._redis.cluster_requests import scan_node, scan_primaries, slot_of
from cache_service.codec import MAGIC

from .scripted import Make


def test_unlink_keys_is_one_unlink(make_core: Make) -> None:
    """One UNLINK on every topology (a cluster client splits it: one pipeline per node)."""
    _, driver = make_core()
    driver.answer(2)
    assert driver.run(unlink_keys(["a", "b", "c"])) == 2
    assert driver.requests == [Unlink(("a", "b", "c"))]


def test_unlink_owned_sends_nothing_for_no_keys(make_core: Make) -> None:
    _, driver = make_core()
    assert driver.run(unlink_owned(False, [])) == 0
    assert driver.run(unlink_owned(True, [])) == 0
    assert driver.requests == []


def test_unlink_owned_is_one_script_with_our_header(make_core: Make) -> None:
    _, driver = make_core()
    driver.answer(1)
    assert driver.run(unlink_owned(False, [b"x", b"y"])) == 1
    assert driver.requests == [Script(UNLINK_OWNED, (b"x", b"y"), (MAGIC,))]


def test_scan_unlink_pages_until_the_cursor_is_zero(make_core: Make) -> None:
    _, driver = make_core()
    driver.answer((7, [b"a"]), 1, (9, []), (0, [b"b", b"c"]), 2)
    assert driver.run(scan_unlink(False, "cs:p::*")) == 3
    assert [r[0] for r in driver.requests] == [0, UNLINK_OWNED, 7, 9, UNLINK_OWNED]
    assert [type(r) for r in driver.requests] == [Scan, Script, Scan, Scan, Script]
    assert driver.requests[0] == Scan(0, "cs:p::*", SCAN_COUNT)


def test_scan_unlink_on_a_cluster_pages_each_primary(make_core: Make) -> None:
    _, driver = make_core()
    driver.answer(({"n1": 5, "n2": 0}, [b"{a}1"]), 1,  # first page of every primary
                  ({"n1": 0}, [b"{a}2", b"{b}2"]), 1, 1)  # n1's second and last page
    assert driver.run(scan_unlink(True, "cs:p::*")) == 3
    assert driver.requests[0] == Call(scan_primaries, ("cs:p::*", SCAN_COUNT))
    assert driver.requests[2] == Call(scan_node, ("n1", 5, "cs:p::*", SCAN_COUNT))
    assert [len(r.keys) for r in driver.requests if type(r) is Script] == [1, 1, 1]  # a slot


def test_cluster_removal_never_mixes_slots_and_misses_no_key(make_core: Make) -> None:
    _, driver = make_core()

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.text(alphabet="ab{}xyz", min_size=1, max_size=6), min_size=1,
                    max_size=20, unique=True))
    def check(keys: list[str]) -> None:
        driver.requests.clear()
        driver.answer(*[1] * len(keys))
        owned = [k.encode() for k in keys]
        assert driver.run(unlink_owned(True, owned)) == len(driver.requests)
        driver.script.clear()
        seen: list[bytes] = []
        for request in driver.requests:
            group = list(request.keys)
            assert len({slot_of(k) for k in group}) == 1
            seen += group
        assert sorted(seen) == sorted(owned)

    check()
