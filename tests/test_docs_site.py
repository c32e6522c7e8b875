"""The docs site as a reader sees it: built with ``mkdocs build --strict`` (a broken link, anchor
or reference fails), served on a free loopback port, and every page loaded in headless Chromium
(Debian's chromium + chromium-driver, installed by scripts/test): no console error, no missing
image, no link to a page or anchor that is not there, and the outage diagram drawn by the
vendored mermaid (no CDN). Screenshots go to $CACHE_SERVICE_DOCS_SCREENS when it is set.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlparse

import pytest

from .servers import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if tag == "a" and name == "href" and value:
                self.links.append(value)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _pages(site: Path) -> list[str]:
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html")
                  if "assets" not in p.parts and "search" not in p.parts)


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    """Also checked by --strict; this reads the HTML the reader gets (nav and generated pages)."""
    parsed: dict[str, _Ids] = {}
    for page in _pages(site):
        ids = _Ids()
        ids.feed((site / page).read_text())
        parsed[page] = ids
    dead = []
    for page, ids in parsed.items():
        base = "http://site/" + page
        for href in ids.links:
            url, fragment = urldefrag(urljoin(base, href))
            target = urlparse(url)
            if target.netloc != "site":
                continue
            path = target.path.lstrip("/")
            path = path + "index.html" if path.endswith("/") or not path else path
            if not (site / path).exists():
                dead.append(f"{page}: {href}")
            elif fragment and path in parsed and fragment not in parsed[path].ids:
                dead.append(f"{page}: {href} (no anchor)")
    assert not dead, "\n".join(dead)


def test_the_home_page_links_each_directly(site: Path) -> None:
    home = _Ids()
    home.feed((site / "index.html").read_text())
    for href in ("guides/django/", "operations/runbooks/redis-down/",
                 "api/#cache_service.CacheService.get_or_set"):
        assert href in home.links, href


needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="chromium/chromedriver missing (scripts/test installs them)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@needs_chromium
def test_every_page_loads_in_chromium(site: Path, served: str, browser: Any) -> None:
    driver = browser
    screens = os.environ.get("CACHE_SERVICE_DOCS_SCREENS")
    problems: list[str] = []
    for page in _pages(site):
        driver.get(served + page.removesuffix("index.html"))
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        problems += [f"{page}: console: {m}" for m in errors]
        broken = driver.execute_script(
            "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src'))")
        problems += [f"{page}: image not loaded: {src}" for src in broken]
        foreign = driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name)"
            ".filter(n => !n.startsWith(location.origin))")
        problems += [f"{page}: fetched from elsewhere: {url}" for url in foreign]
        if page == "concepts/redis-fails/index.html":
            # Material swaps each <pre class="mermaid"> for a <div> holding the drawn SVG
            drawn = driver.execute_async_script(
                "const done = arguments[0], t0 = Date.now();"
                "(function wait() { const d = document.querySelector('div.mermaid');"
                " if (d || Date.now() - t0 > 5000) done(!!d && !document.querySelector("
                "'pre.mermaid')); else setTimeout(wait, 100); })();")
            if not drawn:
                problems.append(f"{page}: the mermaid diagram was not drawn")
        if screens:
            name = {"index.html": "home", "guides/django/index.html": "django-guide",
                    "benchmarks/index.html": "benchmarks",
                    "concepts/redis-fails/index.html": "redis-fails"}.get(page)
            if name:
                Path(screens).mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(Path(screens) / f"{name}.png"))
    assert not problems, "\n".join(problems)


def _click(driver: Any, text: str) -> None:
    """Click the first visible link whose text is ``text`` (as a reader would)."""
    from selenium.webdriver.common.by import By

    links = [a for a in driver.find_elements(By.TAG_NAME, "a")
             if a.is_displayed() and a.text.strip() == text]
    assert links, f"no visible link {text!r} on {driver.current_url}"
    links[0].click()


@needs_chromium
@pytest.mark.parametrize(("path", "arrive"), [
    (["Guides", "Django"], "Django"),
    (["Operations", "Runbooks", "Redis is down"], "Redis is down"),
    (["API reference", "get_or_set"], "get_or_set"),
])
def test_a_newcomer_finds_it_in_three_clicks(served: str, browser: Any, path: list[str],
                                             arrive: str) -> None:
    """The issue's "done when": the Django guide, the outage runbook and get_or_set's reference,
    from the home page through the navigation (the home page also links each directly:
    test_the_home_page_links_each_directly)."""
    from selenium.webdriver.common.by import By

    browser.get(served)
    for text in path:
        _click(browser, text)
    assert len(path) <= 3
    if arrive == "get_or_set":
        assert browser.current_url.endswith("#cache_service.CacheService.get_or_set")
        heading = browser.find_element(By.ID, "cache_service.CacheService.get_or_set")
        assert "get_or_set" in heading.text
    else:
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith(arrive)


def test_the_readme_links_resolve() -> None:
    """The README is read on the forge, not on the site: its relative links name files."""
    text = (ROOT / "README.md").read_text()
    links = [m for m in re.findall(r"\]\(([^)]+)\)", text) if "://" not in m]
    assert links
    missing = [m for m in links if not (ROOT / m.split("#")[0]).exists()]
    assert not missing, missing
    assert len(text.splitlines()) <= 200


def test_the_api_reference_covers_every_public_name(site: Path) -> None:
    """docs/api.md documents what ``__all__`` exports: a new public name appears by itself."""
    import cache_service

    page = _Ids()
    page.feed((site / "api" / "index.html").read_text())
    instances = {"api_cache", "user_cache", "session_cache"}  # described in prose
    missing = [n for n in cache_service.__all__
               if n not in instances and f"cache_service.{n}" not in page.ids]
    assert not missing, missing
    text = (ROOT / "docs" / "api.md").read_text()
    assert all(f"`{n}`" in text for n in instances)
