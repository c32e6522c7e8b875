"""What exists once per Redis location per process (drivers, clients, outage handling);
for now the process-wide table of targets (``targets``)."""
