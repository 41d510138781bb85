"""The local broker's JVM options: the distribution's by default, or the operator's."""

from __future__ import annotations

import pytest

from devtools.stack.kafka_local import JVM_PERFORMANCE_OPTS, jvm_options
from shared.errors import StackError


def test_the_distributions_options_by_default() -> None:
    assert jvm_options({}) == list(JVM_PERFORMANCE_OPTS)
    assert "-XX:MaxGCPauseMillis=20" in jvm_options({})
    assert jvm_options({"SLUICE_KAFKA_JVM_OPTS": "  "}) == list(JVM_PERFORMANCE_OPTS)


def test_given_options_replace_them_as_shell_words() -> None:
    got = jvm_options({"SLUICE_KAFKA_JVM_OPTS": "-XX:+UseZGC '-Dname=a b'"})
    assert got == ["-XX:+UseZGC", "-Dname=a b"]


def test_options_that_do_not_parse_are_a_stack_error_naming_the_variable() -> None:
    with pytest.raises(StackError, match="SLUICE_KAFKA_JVM_OPTS is not shell words"):
        jvm_options({"SLUICE_KAFKA_JVM_OPTS": "-XX:+UseZGC '-Dname=a b"})
