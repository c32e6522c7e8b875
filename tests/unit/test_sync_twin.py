"""CacheService is generated from AsyncCacheService (scripts/gen_sync.py): service.py is what
aio.py generates, and the two services offer the same methods, blocking vs coroutine."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cache_service.aio import AsyncCacheService
from cache_service.service import CacheService

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_sync.py"
RENAMED = {"aclose": "close"}  # async name -> sync name


def gen_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_sync", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_service_py_is_what_aio_py_generates(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen_sync().main(["--check"]) == 0, capsys.readouterr().out


def test_a_stale_service_py_fails_the_check_with_a_diff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    module = gen_sync()
    stale = tmp_path / "service.py"
    text = module.TARGET.read_text(encoding="utf-8")
    edited = text.replace("drop_idle(client)", "pass", 1)
    stale.write_text(edited, encoding="utf-8")
    monkeypatch.setattr(module, "TARGET", stale)
    assert module.main(["--check"]) == 1
    out = capsys.readouterr()
    assert "-                    pass\n" in out.out
    assert "+                    drop_idle(client)\n" in out.out
    assert "stale" in out.err
    assert stale.read_text(encoding="utf-8") == edited  # --check writes nothing


@pytest.mark.parametrize("source", [
    "# unasync: async-only begin\nx = 1\n",  # not ended
    "# unasync: sync-only begin\nx = 1\n# unasync: sync-only end\n",  # not a comment
    "# unasync: async-only end\n",  # not begun
    "x = 1  # unasync: sync-only\n",  # no such trailing marker
    "async def f() -> None:\n    await asyncio.sleep(0)\n",  # no rule for asyncio.sleep
])
def test_malformed_markers_and_leftovers_are_errors(source: str) -> None:
    module = gen_sync()
    with pytest.raises(module.UnasyncError):
        module.unasync(source)


def test_the_markers() -> None:
    source = (
        "# unasync: sync: x = 'sync'\n"
        "x = 'async'  # unasync: async-only\n"
        "    # unasync: sync-only begin\n"
        "    # y = 1\n"
        "    #\n"
        "    # unasync: sync-only end\n"
        "# unasync: async-only begin\n"
        "z = AsyncCacheService\n"
        "# unasync: async-only end\n"
        "async def f(t: Any) -> None:\n"
        "    await t.arun(t._async_client())\n"
    )
    body = gen_sync().unasync(source).split("\n", 2)[2]  # after the header
    assert body == (
        "x = 'sync'\n"
        "    y = 1\n"
        "\n"
        "def f(t: Any) -> None:\n"
        "    t.run(t._client or t.sync_client())\n"
    )


def public_methods(cls: type) -> dict[str, Any]:
    return {name: getattr(cls, name) for name in dir(cls)
            if not name.startswith("_") and inspect.isfunction(getattr(cls, name))}


def test_the_services_have_the_same_methods_blocking_vs_coroutine() -> None:
    sync = public_methods(CacheService)
    asyn = public_methods(AsyncCacheService)
    assert {RENAMED.get(name, name) for name in asyn} == set(sync)
    own = [name for name in vars(AsyncCacheService) if not name.startswith("_")]
    assert {"get", "set", "aclose"} <= set(own)
    for name in own:
        twin = sync[RENAMED.get(name, name)]
        assert inspect.iscoroutinefunction(asyn[name]), name
        assert not inspect.iscoroutinefunction(twin), name
        assert inspect.signature(asyn[name]) == inspect.signature(twin), name
    for name in set(asyn) - set(own):  # ServiceCore's: the same function in both
        assert asyn[name] is sync[RENAMED.get(name, name)], name
