"""Consumer lag of the pipeline's groups: Burrow-style status per partition, ``GET /v1/lag``, gauges."""
