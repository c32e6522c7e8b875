"""The Redis client layer over redis-py's public API: building clients for standalone,
Sentinel and Cluster (``backend``, ``sentinel``, ``cluster``), classifying their errors
(``errors``). Knows nothing of operations or stores."""
