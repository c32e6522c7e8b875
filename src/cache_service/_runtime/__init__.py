"""What exists once per Redis location per process: the ``target`` (drivers, clients, the
gate and outage handling), its ``recovery`` thread, the process-wide table of targets
(``targets``) and the read-only ``view`` that exporters and the CLI use.
"""
