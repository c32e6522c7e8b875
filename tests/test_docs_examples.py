"""Every python example of README.md and docs/ runs as written, over Redis and with Redis refused.

All pages run in one fresh interpreter per mode (tests/docs_examples.py), with REDIS_URL at the
server under test (or at a refused port: the fallback serves everything) and the host state in a
temporary directory. Blocks inside a ``!!! pending`` admonition document features still being
built and are skipped; a page whose blocks are all pending reports nothing to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from . import docs_examples
from .servers import free_port

PAGES = [str(p.relative_to(docs_examples.ROOT)) for p in docs_examples.pages()
         if any(not b.pending for b in docs_examples.blocks(p))]


def _run(redis_url: str, port: int, state: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "CACHE_SERVICE_"))}
    env.update(REDIS_URL=redis_url, CACHE_SERVICE_DIR=str(state),
               CACHE_SERVICE_SIGNING_KEY="docs-examples-signing-key-0123456789")
    out = subprocess.run(
        [sys.executable, "-m", "tests.docs_examples", str(port)], cwd=docs_examples.ROOT,
        capture_output=True, text=True, timeout=180, check=False, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def on_redis(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(redis_server.url, redis_server.port, tmp_path_factory.mktemp("docs-up"))


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    port = free_port()
    return _run(f"redis://127.0.0.1:{port}/0", port, tmp_path_factory.mktemp("docs-down"))


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run_on_redis(on_redis: dict[str, Any], page: str) -> None:
    result = on_redis[page]
    assert result["error"] is None, result["error"]
    assert result["ran"] >= 1


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run_with_redis_refused(refused: dict[str, Any], page: str) -> None:
    result = refused[page]
    assert result["error"] is None, result["error"]


def test_pending_blocks_are_recognised(tmp_path: Path) -> None:
    """A block inside ``!!! pending`` is skipped; the one after the admonition runs."""
    page = tmp_path / "page.md"
    page.write_text("""# x

!!! pending "lands with the thing"
    Text.

    ```python
    raise SystemExit("not yet")
    ```

```python
ok = True
```
""")
    found = docs_examples.blocks(page)
    assert [(b.pending, b.code.strip()) for b in found] == [
        (True, 'raise SystemExit("not yet")'), (False, "ok = True")]


def test_pending_examples_are_valid_python() -> None:
    """Pending blocks do not run yet, but they compile: unpending one at merge finds no typo."""
    import ast

    broken = []
    for path in docs_examples.pages():
        for block in docs_examples.blocks(path):
            if block.pending:
                try:
                    compile(block.code, f"{path.name}:{block.line}", "exec",
                            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
                except SyntaxError as exc:
                    broken.append(f"{path.relative_to(docs_examples.ROOT)}:{block.line}: {exc}")
    assert not broken, "\n".join(broken)
