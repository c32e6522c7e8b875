"""A dogpile.cache region on the ``cache_service`` backend. Run it with::

    CACHE_URL=redis://127.0.0.1:6379/0 CACHE_SERVICE_SIGNING_KEY=... \
        python examples/dogpile_region.py
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from dogpile.cache import make_region

region = make_region()
loads = itertools.count(1)


def configure(url: str, signing_key: str) -> None:
    region.configure("cache_service", expiration_time=300, replace_existing_backend=True,
                     arguments={"url": url, "signing_key": signing_key,
                                "prefix": "dogpile-example"})


@region.cache_on_arguments()
def load_user(user_id: int) -> dict[str, Any]:
    """Stands for a database query; dogpile runs it once per key at a time."""
    return {"id": user_id, "name": f"user {user_id}", "load": next(loads)}


if __name__ == "__main__":
    configure(os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/0"),
              os.environ["CACHE_SERVICE_SIGNING_KEY"])
    print(load_user(7), load_user(7))
