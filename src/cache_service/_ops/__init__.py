"""Pure operations: generators that yield Redis requests and effects, with no socket, file or
thread of their own (the drivers in ``target`` run them). ``protocol`` is the leaf every layer
may import; it imports nothing of ours."""
