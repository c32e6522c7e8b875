"""Redis Sentinel: configuration, replica reads, and failovers on a real deployment.

The session's ``sentinel_deployment`` is a primary, a replica and three sentinels on free
ports. Tests that fail it over call ``ensure_healthy()`` afterwards; each builds its services
on its own list of sentinels (the same sentinels, another order) so it gets its own target,
with its own breaker settings, and never disturbs another test's target. Tests marked so run
on Valkey's Sentinel as well (``valkey_sentinel``: the server matrix). Every test runs on our
own connection layer (the only one for Sentinel); their URLs list the sentinels in reverse:
targets of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from cache_service import AsyncCacheService, CacheService

from .failover import FailoverRun, async_failover
from .helpers import eventually, on_each, unique
from .servers import Flavour, SentinelDeployment, free_port

FAST = {"breaker_min_backoff": 0.05, "breaker_max_backoff": 0.3}


def own_hosts(deployment: SentinelDeployment) -> list[tuple[str, int]]:
    """The sentinels in the order this module's tests list them (reversed)."""
    return list(deployment.sentinels)[::-1]


def own_url(deployment: SentinelDeployment, *, rotate: int = 1, query: str = "") -> str:
    """The deployment's URL with the sentinels listed in another order (another target)."""
    hosts = own_hosts(deployment)
    hosts = hosts[rotate:] + hosts[:rotate]
    listed = ",".join(f"{h}:{p}" for h, p in hosts)
    return f"redis+sentinel://{listed}/{deployment.service_name}/0{query}"


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> Iterator[SentinelDeployment]:
    """The session deployment (of the flavour given as indirect parameter, else Redis), made
    failover-ready again after the test."""
    flavour = getattr(request, "param", "redis")
    shared: SentinelDeployment = request.getfixturevalue(
        "valkey_sentinel" if flavour == "valkey" else "sentinel_deployment")
    yield shared
    shared.ensure_healthy()


def test_url_arguments_and_env_reach_the_primary(
        sentinel_deployment: SentinelDeployment, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = sentinel_deployment
    prefix = unique()
    url = own_url(deployment, rotate=0)
    by_url = CacheService(prefix, url=url)
    by_args = CacheService(prefix, sentinels=own_hosts(deployment),
                           service_name=deployment.service_name)
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("CACHE_SERVICE_CONNECTION", "redis-py")  # standalone only: ignored
    by_env = CacheService(prefix)
    assert by_url.location == by_args.location == by_env.location
    assert by_url.location.startswith("redis+sentinel://")
    by_url.set("k", {"v": 1})
    assert by_args.get("k") == by_env.get("k") == {"v": 1}
    with deployment.primary().client() as raw:
        assert raw.exists(by_url.full_key("k")) == 1
    assert by_env.is_redis_available() is True
    assert by_env.clear_all() == 1


def test_sentinel_password_by_url_and_argument(caplog: pytest.LogCaptureFixture) -> None:
    """Sentinels that require a password: the right one reaches Redis; a wrong or missing
    one is a misconfiguration, not an outage: the fallback serves, one ERROR names
    ``sentinel_password`` and each sentinel (never the secret), ``stats()`` holds it, and no
    WARNING says 'unreachable'."""
    with SentinelDeployment() as private:
        primary = private.primary()
        for sentinel in private.sentinel_servers:
            with sentinel.client() as raw:
                raw.execute_command("ACL", "SETUSER", "default", "on", ">s3cret-sentinel")
        by_url = CacheService(unique(), url=private.url + "?sentinel_password=s3cret-sentinel")
        by_args = CacheService(unique(), sentinels=private.sentinels,
                               service_name=private.service_name,
                               sentinel_password="s3cret-sentinel")
        for svc in (by_url, by_args):
            svc.set("k", "v")
            assert svc.is_redis_available() is True
            with primary.client() as raw:
                assert raw.exists(svc.full_key("k")) == 1
            svc.close()
        for given, code in (("wrong-pw", "WRONGPASS"), (None, "NOAUTH")):
            caplog.clear()
            caplog.set_level(logging.WARNING, logger="cache_service")
            wrong = CacheService(unique(), sentinels=private.sentinels,
                                 service_name=private.service_name, sentinel_password=given,
                                 **FAST)
            wrong.set("k", "memory")
            assert wrong.get("k") == "memory"
            assert wrong.is_redis_available() is False
            problem = wrong.stats()["target"]["misconfiguration"]
            wrong.close()
            records = [r for r in caplog.records if r.name == "cache_service"]
            assert [r.levelname for r in records] == ["ERROR"], [r.getMessage() for r in records]
            message = records[0].getMessage()
            assert message.startswith(problem)
            assert f"({code})" in message
            assert "sentinel_password" in message
            assert "unreachable" not in message
            assert "s3cret-sentinel" not in message
            assert "wrong-pw" not in message
            assert len(message) < 600


def test_a_wrong_sentinel_password_is_a_misconfiguration_under_asyncio() -> None:
    """The asyncio discovery says the same: a misconfiguration naming sentinel_password."""

    async def body(private: SentinelDeployment) -> str:
        wrong = AsyncCacheService(unique(), sentinels=private.sentinels,
                                  service_name=private.service_name,
                                  sentinel_password="wrong-pw", **FAST)
        await wrong.set("k", "memory")
        assert await wrong.get("k") == "memory"
        problem: str = (await wrong.stats())["target"]["misconfiguration"]
        await wrong.aclose()
        return problem

    with SentinelDeployment() as private:
        for sentinel in private.sentinel_servers:
            with sentinel.client() as raw:
                raw.execute_command("ACL", "SETUSER", "default", "on", ">s3cret-sentinel")
        problem = asyncio.run(body(private))
        assert "(WRONGPASS)" in problem
        assert "sentinel_password" in problem
        assert "wrong-pw" not in problem


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_batches_counters_and_tags_through_sentinel(
        each_sentinel: SentinelDeployment, kind: str) -> None:
    """The operations of issue 9 reach the primary the sentinels name (pipeline, scripts,
    MGET go through the Sentinel client like GET and SET)."""

    async def body(svc: Any, call: Callable[[Any], Awaitable[Any]]) -> None:
        await call(svc.set_many({"a": 1, "b": [2]}, tags=["t"]))
        assert await call(svc.get_many(["a", "b", "c"])) == {"a": 1, "b": [2]}
        assert await call(svc.add("c", "x")) is True
        assert await call(svc.add("c", "y")) is False
        assert [await call(svc.incr("n")) for _ in range(3)] == [1, 2, 3]
        assert await call(svc.touch("c", 50)) is True
        left = await call(svc.ttl("c"))
        assert left is not None
        assert 40 < left <= 50
        await call(svc.invalidate_tags("t"))
        assert await call(svc.get_many(["a", "b", "c"])) == {"c": "x"}
        assert await call(svc.exists("a")) is False
        await call(svc.clear_all())

    url = own_url(each_sentinel, rotate=0)
    if kind == "sync":
        async def now(value: Any) -> Any:
            return value

        asyncio.run(body(CacheService(unique(), url=url), now))
    else:
        async def main() -> None:
            async with AsyncCacheService(unique(), url=url) as svc:
                async def awaited(value: Any) -> Any:
                    return await value

                await body(svc, awaited)

        asyncio.run(main())


def test_read_from_replicas_reads_a_replica_and_writes_the_primary(
        sentinel_deployment: SentinelDeployment) -> None:
    deployment = sentinel_deployment
    svc = CacheService(unique(), url=own_url(deployment, rotate=2,
                                             query="?read_from_replicas=true"))
    try:
        svc.set("k", "v")
        deployment.wait_for_replication()
        (replica,) = [s for s in deployment.replicas() if s.is_running()]
        with replica.client() as raw:
            raw.config_resetstat()
            assert svc.get("k") == "v"
            stats = raw.info("commandstats")
        assert stats.get("cmdstat_get", {}).get("calls", 0) >= 1
        with deployment.primary().client() as raw:
            assert raw.exists(svc.full_key("k")) == 1
        assert svc.delete("k") == 1
    finally:
        svc.close()


def test_unknown_service_or_dead_sentinels_fall_back_to_memory(
        sentinel_deployment: SentinelDeployment) -> None:
    dead = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    for svc in (
        CacheService(unique(), sentinels=own_hosts(sentinel_deployment),
                     service_name="no-such-service", **FAST),
        CacheService(unique(), sentinels=dead, service_name="mymaster",
                     **FAST),
    ):
        started = time.perf_counter()
        svc.set("k", "memory")
        assert svc.get("k") == "memory"
        assert svc.delete("k") == 1
        assert svc.invalidate_pattern("*") == 0
        assert svc.is_redis_available() is False
        assert time.perf_counter() - started < 2.0
        assert svc.stats()["target"]["breaker_state"] != "closed"


@on_each("deployment")
def test_failover_under_load(deployment: SentinelDeployment,
                             record_property: Any) -> None:
    """Kill the primary mid-load: no exception, back on the new primary by itself, and no
    value invalidated during the failover is ever served again."""
    svc = CacheService(unique(), url=own_url(deployment),
                       **FAST)
    run = FailoverRun(svc, victims=[f"victim:{i}" for i in range(6)])
    run.prepare(deployment.wait_for_replication)
    run.start()
    old = run.kill(deployment.kill_primary)
    run.invalidate_victims_during_outage()
    new = deployment.wait_for_failover(old, timeout=45)
    run.wait_back_on_redis()
    figures = run.finish()
    svc.close()
    figures.check("sentinel-wire", record_property)
    with deployment.server_for(new).client() as raw:  # deleted, and overwritten in memory
        assert raw.exists(svc.full_key("victim:0"), svc.full_key("victim:1")) == 0


def write_until_back_on_redis(svc: CacheService, timeout: float = 30.0) -> None:
    """Keep writing until the service is on Redis with a closed breaker; no exception."""
    deadline = time.monotonic() + timeout
    while True:
        svc.set("k", "during")  # raises only on a bug: the test fails with it
        target = svc.stats()["target"]
        if target["breaker_state"] == "closed" and svc.is_redis_available():
            return
        assert time.monotonic() < deadline, target
        time.sleep(0.01)


def test_manual_failover_with_min_replicas_to_write() -> None:
    """SENTINEL FAILOVER leaves the old primary alive, and still a primary, for ~10 s until
    the sentinels convert it. With ``min-replicas-to-write 1`` (see the Sentinel guide) it refuses
    writes as soon as its replica left: an outage for the service, which journals and
    replays on the new primary, so nothing written to the old one is lost. (Our own layer
    usually sends the write to the new primary already: it follows ``+switch-master``; then
    there is no outage at all.)"""
    with SentinelDeployment() as private:
        svc = CacheService(unique(), url=private.url, **FAST)
        svc.set("k", "before")
        svc.set("gone", "old")
        private.wait_for_replication()
        primary = private.primary()
        with primary.client() as raw:
            raw.config_set("min-replicas-to-write", 1)
        with private.sentinel_client() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", private.service_name)
        new = private.wait_for_failover(primary.address)
        with primary.client() as raw:
            assert eventually(lambda: raw.info("replication")["connected_slaves"] == 0)
            assert raw.info("replication")["role"] == "master"  # not converted yet
        svc.delete("gone")  # NOREPLICAS from the old primary: journalled
        write_until_back_on_redis(svc)
        assert svc.get("gone") is None
        with private.server_for(new).client() as raw:
            assert raw.exists(svc.full_key("gone")) == 0
            assert raw.exists(svc.full_key("k")) == 1
        svc.close()


def swap_roles(private: SentinelDeployment) -> Any:
    """Make the replica the primary and the primary its replica, behind the sentinels' back
    (the clients connected to the old primary stay connected); the new primary."""
    primary = private.primary()
    (replica,) = private.replicas()
    with replica.client() as raw:
        raw.execute_command("REPLICAOF", "NO", "ONE")
    with primary.client() as raw:
        raw.execute_command("REPLICAOF", replica.host, str(replica.port))
    return replica


def monitor(private: SentinelDeployment, node: Any) -> None:
    """Make every sentinel monitor ``node`` as the service's primary."""
    for sentinel in private.sentinel_servers:
        with sentinel.client() as raw:
            raw.execute_command("SENTINEL", "REMOVE", private.service_name)
            raw.execute_command("SENTINEL", "MONITOR", private.service_name,
                                node.host, str(node.port), "2")


@on_each("server_flavour")
def test_read_only_replies_of_a_demoted_primary_open_the_breaker(
        caplog: pytest.LogCaptureFixture, server_flavour: Flavour) -> None:
    """A primary demoted behind the service's back (REPLICAOF, its clients kept) answers
    writes with READONLY: that is an outage; the service journals, asks the sentinels again
    and replays on the new primary."""
    caplog.set_level(logging.INFO, logger="cache_service")
    with SentinelDeployment(flavour=server_flavour) as private:
        svc = CacheService(unique(), url=private.url, **FAST)
        svc.set("k", "before")
        svc.set("other", "before")
        private.wait_for_replication()
        replica = swap_roles(private)
        svc.delete("other")  # READONLY: journalled, replayed once the sentinels agree
        assert svc.stats()["target"]["breaker_opened"] == 1
        monitor(private, replica)
        write_until_back_on_redis(svc)
        assert svc.get("other") is None
        svc.set("k", "on the new primary")
        with replica.client() as raw:
            assert raw.get(svc.full_key("k")) is not None
            assert raw.exists(svc.full_key("other")) == 0
        assert svc.get("k") == "on the new primary"
        svc.close()
    assert any("is now a replica" in r.getMessage() for r in caplog.records)


def test_async_service_through_a_failover(deployment: SentinelDeployment,
                                          record_property: Any) -> None:
    """AsyncCacheService through a primary kill."""

    async def main() -> Any:
        async with AsyncCacheService(unique(), url=own_url(deployment, rotate=2), **FAST) as svc:
            await svc.set("k", {"v": 1})
            assert await svc.get("k") == {"v": 1}
            assert await svc.invalidate_pattern("*") == 1
            assert await svc.is_redis_available() is True
            return await async_failover(svc, [f"victim:{i}" for i in range(4)],
                                        replicate=deployment.wait_for_replication,
                                        kill=deployment.kill_primary)

    asyncio.run(main()).check("sentinel_asyncio-wire", record_property)


def test_wire_follows_a_primary_moved_behind_its_back_without_an_outage() -> None:
    """Our own layer reads READONLY as "the primary moved": it asks the sentinels at once
    (checking with ROLE) and sends the write again to the new primary, so a failover it did
    not see costs that call one discovery, not an outage."""
    with SentinelDeployment() as private:
        svc = CacheService(unique(), url=private.url, connection="wire", **FAST)
        svc.set("k", "before")
        private.wait_for_replication()
        replica = swap_roles(private)
        monitor(private, replica)  # the sentinels name the new primary
        svc.set("k", "after")  # READONLY from the old primary, then sent to the new one
        assert svc.stats()["target"]["breaker_opened"] == 0
        with replica.client() as raw:
            assert raw.get(svc.full_key("k")) is not None
        assert svc.get("k") == "after"
        svc.close()


def test_an_acl_user_reaches_the_primary(sentinel_deployment: SentinelDeployment) -> None:
    """``user:password@`` in a Sentinel URL authenticates to the data nodes (the sentinels
    take ``sentinel_password=``)."""
    deployment = sentinel_deployment
    nodes = [deployment.primary(), *deployment.replicas()]
    for node in nodes:  # ACL users are not replicated: each node gets its own
        with node.client() as raw:
            raw.execute_command("ACL", "SETUSER", "cache-app", "on", ">app-pw", "~*", "+@all")
    try:
        url = own_url(deployment, rotate=1).replace("://", "://cache-app:app-pw@")
        svc = CacheService(unique(), url=url)
        svc.set("k", {"v": 1})
        assert svc.get("k") == {"v": 1}
        assert svc.is_redis_available() is True
        with deployment.primary().client() as raw:
            assert raw.exists(svc.full_key("k")) == 1
        svc.close()
    finally:
        for node in nodes:
            with node.client() as raw:
                raw.execute_command("ACL", "DELUSER", "cache-app")


def test_wire_follows_switch_master_while_the_old_primary_still_accepts_writes() -> None:
    """SENTINEL FAILOVER leaves the old primary a writable primary for ~10 s (writes sent
    there meanwhile are lost). Our own layer subscribes to ``+switch-master``: its writes go
    to the new primary as soon as the sentinels announce it, with no outage."""
    with SentinelDeployment() as private:
        svc = CacheService(unique(), url=private.url, connection="wire", **FAST)
        svc.set("k", "before")  # the first discovery starts the subscription
        private.wait_for_replication()
        old = private.primary()
        with private.sentinel_client() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", private.service_name)
        new = private.wait_for_failover(old.address)
        with old.client() as raw:
            assert raw.info("replication")["role"] == "master"  # not converted yet

        def lands_on_the_new_primary() -> bool:
            svc.set("fresh", "after")  # written after the switch: only the new one has it
            with private.server_for(new).client() as raw:
                return bool(raw.exists(svc.full_key("fresh")))

        assert eventually(lands_on_the_new_primary, timeout=3)
        assert svc.stats()["target"]["breaker_opened"] == 0
        svc.close()
