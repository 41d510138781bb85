"""sluice's development tooling, kept out of the runtime services.

    stack/   a local Kafka (KRaft, from the jars) and redis-server; ``sluice dev``
    fleet/   the pipeline's services as local processes, and chaos against them
    runs/    input for a whole-pipeline run and the check of what it delivered
    demo.py  ``sluice demo``

Imports go one way: this wing uses ``services`` and ``shared``; no runtime
module imports it. Only the CLI's ``dev``, ``demo`` and ``bench`` commands
(from inside the command), ``bench`` and the tests reach it.
"""
