"""Pure operations: generators that yield Redis requests (``requests``) and effects, with no
socket, file or thread of their own; the drivers of ``_runtime.target`` run them. Each takes
the service's ``context.OpContext``. ``protocol`` is the leaf every layer may import; it
imports nothing of ours.
"""
