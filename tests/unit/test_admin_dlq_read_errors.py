"""Record-level errors of the admin's reads: fatal ones stop the read, others are logged."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.admin.dlq.reader import passing_error


def test_a_passing_error_is_logged_with_its_partition_and_the_read_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.admin.dlq.reader"):
        passing_error(KafkaError(KafkaError._TRANSPORT, "broker down"), "p.results", 3)
    assert "p.results[3]" in caplog.text and "broker down" in caplog.text


def test_a_fatal_error_is_raised() -> None:
    with pytest.raises(KafkaException):
        passing_error(KafkaError(KafkaError._FATAL, "fenced", fatal=True), "p.results", 0)
