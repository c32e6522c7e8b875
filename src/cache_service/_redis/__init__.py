"""The Redis client layer: building clients for standalone, Sentinel and Cluster (``backend``:
our own connection layer for every location, redis-py's public client for a standalone one
that asks for it), classifying their errors (``errors``), the cluster requests and slot
grouping (``cluster_requests``), and the clients on our own connection layer (``wire_client``
standalone; Sentinel: ``wire_sentinel`` discovery, ``wire_sentinel_client``,
``wire_sentinel_watch``; Cluster: ``slots`` routing without I/O, ``wire_topology`` the shared
slot map, ``wire_cluster`` and ``wire_cluster_async``). Knows nothing of operations or stores."""
