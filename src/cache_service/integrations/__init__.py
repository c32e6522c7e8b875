"""Optional framework integrations; each is imported explicitly and needs its extra.

- ``cache_service.integrations.fastapi`` (``pip install cache_service[fastapi]``)
- ``cache_service.integrations.prometheus`` (``pip install cache_service[prometheus]``)
- ``cache_service.integrations.otel`` (``pip install cache_service[otel]``)

``figures`` (no extra) defines what both metric exporters publish.
"""
