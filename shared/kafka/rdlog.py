"""Route librdkafka's log lines through Python logging, without floods.

librdkafka repeats the same connection error many times a second while a
broker is down; one line per distinct message per interval is enough.
"""

from __future__ import annotations

import logging
import re
import time

_DIGITS = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """Let a message shape through at most once per ``interval_s``."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        shape = _DIGITS.sub("#", record.getMessage())
        now = time.monotonic()
        last = self._seen.get(shape)
        if last is not None and now - last < self.interval_s:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[shape] = now
        return True


def rdkafka_logger() -> logging.Logger:
    logger = logging.getLogger("librdkafka")
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
