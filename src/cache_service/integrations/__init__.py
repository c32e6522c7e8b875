"""Optional framework integrations; each is imported explicitly and needs its extra.

- ``cache_service.integrations.fastapi`` (``pip install cache_service[fastapi]``)
"""
