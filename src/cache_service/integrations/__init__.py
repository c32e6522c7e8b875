"""Optional framework integrations; each is imported explicitly and needs its extra.

- ``cache_service.integrations.fastapi`` (``pip install cache_service[fastapi]``)
- ``cache_service.integrations.prometheus`` (``pip install cache_service[prometheus]``)
- ``cache_service.integrations.otel`` (``pip install cache_service[otel]``)
- ``cache_service.integrations.django``: ``DjangoCache``, a Django cache backend (``[django]``)
- ``cache_service.integrations.cachelib``: ``CachelibCache``, a cachelib cache (``[flask]``)
- ``cache_service.integrations.flask``: ``make_cache``, Flask-Caching's factory for
  ``CACHE_TYPE`` (``[flask]``)
- ``cache_service.integrations.litestar``: ``CacheServiceStore``, a Litestar ``Store`` for its
  response cache, rate limiting and server-side sessions (``[litestar]``)
- ``cache_service.integrations.dogpile``: the dogpile.cache backend ``"cache_service"``
  (``[dogpile]``, registered through the ``dogpile.cache`` entry point group)

``figures`` (no extra) defines what both metric exporters publish.
"""
