"""A SIGTERM to the test run ends it as Ctrl-C does: pytest stops, every active
fixture's finalizer runs, and the services, fakellm, brokers and benchmark peers
the fixtures started are stopped with it instead of outliving the run."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import pytest

_previous: Any = None


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config: pytest.Config) -> None:
    global _previous
    _previous = signal.signal(signal.SIGTERM, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _previous is not None:
        signal.signal(signal.SIGTERM, _previous)
