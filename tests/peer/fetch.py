"""Download and cache the frameworks' own cache test suites (idempotent, offline once cached).

``python tests/peer/fetch.py`` (run by ``scripts/test``) puts, for the installed version of
each framework, the test files of its sdist under ``$CACHE_SERVICE_PEER_SUITES`` (default
``.venv/peer-suites``)::

    django-5.2.19/cache/...      tests/cache/ of Django's sdist
    cachelib-0.17.0/tests/...    tests/ of cachelib's sdist
    flask-caching-2.5.1/tests/... tests/ of Flask-Caching's sdist
    djangorestframework-3.18.3/tests/...   tests/ of DRF's sdist (its throttling tests)
    django-axes-8.3.1/tests/...  tests/ of django-axes' sdist
    django-cachalot-2.9.1/settings.py, runtests_urls.py   its test settings (the tests ship
                                 in the wheel, as cachalot.tests)

dogpile.cache ships its suites in the wheel (``dogpile.testing``), as django-ratelimit does
(``django_ratelimit.tests``): nothing to fetch. A cached suite is never downloaded again;
without network and without a cache, this fails saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# distribution -> what to take from its sdist: (member prefix, directory it becomes); a
# prefix naming one file is copied into that directory under its own name
SUITES: dict[str, tuple[tuple[str, str], ...]] = {
    "django": (("tests/cache/", "cache"),),
    "cachelib": (("tests/", "tests"),),
    "djangorestframework": (("tests/", "tests"),),
    "django-axes": (("tests/", "tests"),),
    "flask-caching": (("tests/", "tests"),),
    "django-cachalot": (("settings.py", ""), ("runtests_urls.py", "")),
}


def suites_dir() -> Path:
    return Path(os.environ.get("CACHE_SERVICE_PEER_SUITES", ROOT / ".venv" / "peer-suites"))


def ensure(dist: str) -> Path:
    """The directory holding ``dist``'s cached suite (downloaded on first use)."""
    version = metadata.version(dist)
    home = suites_dir() / f"{dist}-{version}"
    if (home / ".complete").exists():
        return home
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--no-deps", "--no-binary", ":all:", "-d", tmp, f"{dist}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode or not archives:
            raise RuntimeError(f"could not download the {dist}=={version} sdist for its test "
                               f"suite (network needed once):\n{proc.stderr[-2000:]}")
        home.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            for info in tar.getmembers():
                _top, _, rest = info.name.partition("/")
                member, name = next(((m, n) for m, n in SUITES[dist] if rest.startswith(m)),
                                    ("", ""))
                if not member or not info.isfile():
                    continue
                dest = home / name / (rest[len(member):] or Path(rest).name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(info)
                assert src is not None
                dest.write_bytes(src.read())
    (home / ".complete").write_text(f"{dist}=={version}\n")
    return home


def main() -> None:
    for dist in SUITES:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            print(f"peer suite {dist}: not installed, skipped (its tests will skip too)")
            continue
        print(f"peer suite {dist}: {ensure(dist)}")


if __name__ == "__main__":
    main()
