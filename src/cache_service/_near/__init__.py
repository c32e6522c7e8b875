"""The near cache: per-process copies of Redis values (``store``), kept coherent by Redis
client-side tracking (``tracker``, reading invalidations off its own connections:
``_wire.PushConnection``)
and by the host page's slots for writes of this host's processes."""
