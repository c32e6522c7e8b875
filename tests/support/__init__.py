"""Real Redis processes and network chaos for integration tests.

Everything here starts *real* ``redis-server`` processes (standalone, TLS, sentinel,
cluster) in throw-away temp dirs on free loopback ports, plus a TCP proxy that can
cut, hang or slow down connections.  Nothing ever talks to a server it did not start:
ports come from :func:`free_port` (never 6379) and every readiness probe checks that
the answering server reports the PID of the process we spawned.

Every object is a context manager, ``close()`` is idempotent, and anything still
alive at interpreter exit is killed by an ``atexit`` hook, so a failing test never
leaks processes or temp dirs.
"""
