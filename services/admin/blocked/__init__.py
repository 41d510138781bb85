"""Blocked keys (the sequencer's block mode): ``GET /v1/blocked``, ``POST /v1/blocked/release``."""
