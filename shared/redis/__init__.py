"""Shared provider state in Redis: limits, cooldowns, breaker, pause, cache."""
