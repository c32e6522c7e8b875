"""Host-shared state: what every process of this host sees for one Redis location.

The page (a shared memory map of generations and counters), the locks, the SQLite database
of the outage journal and the host-shared fallback store, the circuit breaker, the state
directory's safety rules, and the per-process memory store. Imports nothing of ``_runtime``,
``_near`` or ``_redis``.
"""
