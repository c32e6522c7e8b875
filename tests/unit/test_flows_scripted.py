"""get_or_set as a flow over a scripted driver: its requests and its effects (single-flight,
the cross-process lock, the loader), with no sockets and no threads of ours but a leader's."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cache_service._ops.get_or_set import get_or_set
from cache_service._ops.loading import (
    LOAD,
    RETRY,
    UNLOCK,
    Flight,
    Outcome,
    Sleep,
    Wait,
    in_flight,
    join,
    land,
    load_policy,
    lock_key,
)
from cache_service._ops.requests import Get, Script, Set
from cache_service._ops.scripts import SET_UNLESS_FOREIGN
from cache_service.codec import HEADER_SIZE, STAMPER, JsonCodec, pack

from .scripted import Make

JSON = JsonCodec()


class Loader:
    """A loader that counts its calls."""

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error, self.calls = value, error, 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


def led_elsewhere(target: Any, k: str) -> Flight:
    """A flight for ``k`` led by another thread (which then leaves it to the test)."""
    led: list[Flight] = []
    thread = threading.Thread(target=lambda: led.append(join(target, k, None)[0]))
    thread.start()
    thread.join()
    return led[0]


def test_hit_asks_one_get_and_never_loads(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(pack(JSON, "cached", k, 1 << 20, STAMPER.next()))
    loader = Loader("loaded")
    assert driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), loader) == "cached"
    assert driver.requests == [Get(k)]
    assert driver.effects == []
    assert loader.calls == 0


def test_miss_looks_again_loads_once_and_stores_politely(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    driver.answer(None, None, 1)
    loader = Loader({"n": 1})
    assert driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), loader) == {"n": 1}
    assert loader.calls == 1
    assert driver.effects == [LOAD]
    get1, get2, store = driver.requests
    assert get1 == get2 == Get(k)
    assert store[:2] == (SET_UNLESS_FOREIGN, (k,))
    assert store.args[0][HEADER_SIZE:] == b'{"n":1}'
    assert store.args[1] == 5000
    assert in_flight() == 0


def test_none_is_not_stored_unless_asked(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(None, None)
    assert driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), Loader(None)) is None
    assert len(driver.requests) == 2  # two looks, no write
    driver.requests.clear()
    driver.answer(None, None, 1)
    driver.run(get_or_set(core._ctx, "k", 5, load_policy(cache_none=True), task=None), Loader(None))
    assert len(driver.requests) == 3


def test_loader_error_propagates_lands_the_flight_and_stores_nothing(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(None, None)
    with pytest.raises(LookupError):
        driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None),
                   Loader(error=LookupError("backend down")))
    assert [type(r) for r in driver.requests] == [Get, Get]
    assert in_flight() == 0


def test_lock_is_taken_before_loading_and_released_after(make_core: Make) -> None:
    core, driver = make_core()
    k, name = core.full_key("k"), lock_key(core.prefix, "k")
    policy = load_policy(lock=True, lock_ttl=3)
    driver.answer(None, True, None, 1, 1)
    assert driver.run(get_or_set(core._ctx, "k", 5, policy, task=None), Loader(9)) == 9
    get1, take, get2, store, release = driver.requests
    assert get1 == get2 == Get(k)
    assert take == Set(name, take.value, 3000, nx=True)
    assert type(store) is Script
    assert release == Script(UNLOCK, (name,), (take.value,))  # compare-and-delete, our token


def test_lock_is_released_when_the_loader_fails(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(None, True, None, 1)
    with pytest.raises(ValueError, match="nope"):
        driver.run(get_or_set(core._ctx, "k", 5, load_policy(lock=True), task=None),
                   Loader(error=ValueError("nope")))
    assert driver.requests[-1][0] == UNLOCK


def test_lock_held_elsewhere_polls_and_takes_the_value_it_filled(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    filled = pack(JSON, "theirs", k, 1 << 20, STAMPER.next())
    driver.answer(None, None, filled)  # miss; lock taken by another process; then filled
    loader = Loader("ours")
    result = driver.run(get_or_set(core._ctx, "k", 5, load_policy(lock=True), task=None), loader)
    assert result == "theirs"
    assert loader.calls == 0
    assert [type(e) for e in driver.effects] == [Sleep]
    assert [type(r) for r in driver.requests] == [Get, Set, Get]


def test_lock_wait_over_loads_anyway(make_core: Make) -> None:
    core, driver = make_core()
    driver.answer(None, None, None, 1)  # miss; lock held elsewhere; look again; store
    policy = load_policy(lock=True, lock_wait=0)
    assert driver.run(get_or_set(core._ctx, "k", 5, policy, task=None), Loader(3)) == 3
    assert driver.effects == [LOAD]
    assert [type(r) for r in driver.requests] == [Get, Set, Get, Script]


def test_a_waiter_shares_the_leaders_value_without_loading(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    flight = led_elsewhere(core._target, k)

    def leader_finishes(effect: Any, loader: Any) -> Any:
        assert type(effect) is Wait
        assert effect.flight is flight
        land(core._target, k, flight, Outcome({"v": [1]}, codec=JSON, key=k))
        return effect.perform(loader)

    driver.answer(None)
    loader = Loader("never")
    got = driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), loader,
                     effects=leader_finishes)
    assert got == {"v": [1]}
    assert loader.calls == 0
    assert driver.requests == [Get(k)]
    assert len(driver.effects) == 1


def test_a_waiter_gets_the_leaders_error(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    flight = led_elsewhere(core._target, k)

    def leader_fails(effect: Any, loader: Any) -> Any:
        land(core._target, k, flight, Outcome(error=KeyError("shared")))
        return effect.perform(loader)

    driver.answer(None)
    with pytest.raises(KeyError, match="shared"):
        driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), Loader(1),
                   effects=leader_fails)


def test_a_waiter_whose_leader_was_cancelled_looks_again_and_leads(make_core: Make) -> None:
    core, driver = make_core()
    k = core.full_key("k")
    flight = led_elsewhere(core._target, k)

    def leader_cancelled(effect: Any, loader: Any) -> Any:
        if type(effect) is Wait:
            land(core._target, k, flight, RETRY)
        return effect.perform(loader)

    driver.answer(None, None, None, 1)
    got = driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), Loader(4),
                     effects=leader_cancelled)
    assert got == 4
    assert [type(e) for e in driver.effects] == [Wait, type(LOAD)]
    assert [type(r) for r in driver.requests] == [Get, Get, Get, Script]
    assert in_flight() == 0


def test_a_caller_never_waits_for_its_own_load(make_core: Make) -> None:
    """A flight this very thread leads (e.g. the loader asks for its own key): load, no
    Wait effect that could never end."""
    core, driver = make_core()
    k = core.full_key("k")
    flight, leading = join(core._target, k, None)
    assert leading
    try:
        driver.answer(None, None, 1)
        assert driver.run(get_or_set(core._ctx, "k", 5, load_policy(), task=None), Loader(2)) == 2
        assert driver.effects == [LOAD]
    finally:
        land(core._target, k, flight, RETRY)
