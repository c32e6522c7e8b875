"""The Redis client layer over redis-py's public API: building clients for standalone,
Sentinel and Cluster (``backend``, ``sentinel``, ``cluster``), classifying their errors
(``errors``), and the clients on our own connection layer (``wire_client`` standalone;
Sentinel: ``wire_sentinel`` discovery, ``wire_sentinel_client``, ``wire_sentinel_watch``;
Cluster: ``slots`` routing without I/O, ``wire_topology`` the shared slot map,
``wire_cluster`` and ``wire_cluster_async``). Knows nothing of operations or stores."""
