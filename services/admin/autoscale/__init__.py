"""How many enrich workers are useful now: the ``sluice_enrich_useful_workers`` gauge (for KEDA)."""
