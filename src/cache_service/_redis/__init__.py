"""The Redis client layer over redis-py's public API: building clients for standalone,
Sentinel and Cluster (``backend``, ``sentinel``, ``cluster``), classifying their errors
(``errors``); and the clients on our own layer ``_wire`` (``wire_client`` standalone,
``wire_sentinel`` + ``wire_sentinel_client`` Sentinel). Knows nothing of operations or
stores."""
