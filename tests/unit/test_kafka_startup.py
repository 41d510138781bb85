"""Start-up checks against Kafka: passthrough properties, broker reachability, topics."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from pydantic import SecretStr

from shared.errors import ConfigError, StackError, TopicError
from shared.kafka.config import consumer_config, producer_config, prompt_producer_config
from shared.kafka.startup import (
    check_props,
    check_topics,
    prop_env_name,
    prop_problem,
    topic_problem,
)
from shared.settings import CommonSettings
from shared.topics import Topics

T = Topics("p")


def props(**kv: str) -> dict[str, SecretStr]:
    return {k.replace("_", "."): SecretStr(v) for k, v in kv.items()}


def test_property_names_map_back_to_their_variables() -> None:
    assert prop_env_name("sasl.mechanism") == "SLUICE_KAFKA_PROP_SASL_MECHANISM"
    assert prop_env_name("no.such.thing") == "SLUICE_KAFKA_PROP_NO_SUCH_THING"


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (props(no_such_thing="1"), 'SLUICE_KAFKA_PROP_NO_SUCH_THING: No such configuration property: "no.such.thing"'),
        (props(acks="banana"), "SLUICE_KAFKA_PROP_ACKS: Invalid value"),  # librdkafka says request.required.acks
        (props(linger_ms="-5"), "SLUICE_KAFKA_PROP_LINGER_MS: "),
        (props(client_id="ok", compression_type="banana"), "SLUICE_KAFKA_PROP_COMPRESSION_TYPE: "),
    ],
)  # fmt: skip
def test_a_refused_property_is_one_config_error_naming_its_variable(
    given: dict[str, SecretStr], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_props(given)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_valid_properties_pass_without_a_client() -> None:
    check_props(props(acks="all", linger_ms="20", group_instance_id="seq-0", sasl_password="pw"))
    check_props({})


def test_a_secret_value_never_shows_in_the_message() -> None:
    line = prop_problem("sasl.password", "hunter2", 'Invalid value "hunter2" for property')
    assert "hunter2" not in line and "***" in line
    assert "banana" in prop_problem("compression.type", "banana", 'Invalid value "banana"')


def test_client_configs_check_the_passthrough_properties() -> None:
    settings = CommonSettings(kafka_props=props(no_such_thing="1"))
    with pytest.raises(ConfigError, match="SLUICE_KAFKA_PROP_NO_SUCH_THING"):
        producer_config(settings)
    with pytest.raises(ConfigError, match="SLUICE_KAFKA_PROP_NO_SUCH_THING"):
        consumer_config(settings, "g")


def test_topic_problems() -> None:
    full = {T.work: 3, T.results: 3, T.state: 3, T.dlq("poison"): 3, "src": 5}
    assert topic_problem(full, ["src", T.work, T.dlq("poison")], T.co_partitioned) is None
    missing = topic_problem({T.work: 3}, [T.work, T.dlq("poison")], T.co_partitioned)
    assert isinstance(missing, TopicError)
    assert str(missing) == "topic 'p.dlq.poison' does not exist: run `sluice topics create`"
    source = topic_problem({T.work: 3}, ["src", T.work], external={"src"})
    assert str(source) == "topic 'src' does not exist"
    skewed = topic_problem({**full, T.results: 2}, [T.work], T.co_partitioned)
    assert isinstance(skewed, TopicError)
    assert "must be co-partitioned" in str(skewed) and "'p.results': 2" in str(skewed)


class FakeClient:
    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self.counts = counts
        self.timeouts: list[float] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.timeouts.append(timeout)
        if self.counts is None:
            raise KafkaException(
                KafkaError(
                    KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"
                )
            )
        topics = {
            n: SimpleNamespace(error=None, partitions=dict.fromkeys(range(c)))
            for n, c in self.counts.items()
        }
        return SimpleNamespace(topics=topics)  # fmt: skip


def test_check_topics_waits_at_most_the_startup_timeout_then_names_the_setting() -> None:
    settings = CommonSettings(kafka_bootstrap="127.0.0.1:1", startup_timeout_s=2)
    client = FakeClient()
    with pytest.raises(StackError) as err:
        check_topics(client, settings, [T.work])
    assert client.timeouts == [2]
    assert str(err.value) == (
        "Kafka at 127.0.0.1:1 (SLUICE_KAFKA_BOOTSTRAP) is not reachable: "
        "Failed to get metadata: Local: Broker transport failure"
    )


def test_check_topics_returns_the_counts_or_raises_the_problem() -> None:
    settings = CommonSettings()
    ok = FakeClient({T.work: 3, T.results: 3, T.state: 3, T.output: 3})
    assert check_topics(ok, settings, [T.work, T.output], T.co_partitioned) == {
        T.work: 3,
        T.output: 3,
    }
    with pytest.raises(TopicError, match="co-partitioned"):
        check_topics(FakeClient({T.work: 3, T.results: 2}), settings, [T.work], T.co_partitioned)


def test_a_passthrough_property_replaces_the_producers_batching_defaults_only() -> None:
    plain = producer_config(CommonSettings())
    assert (plain["linger.ms"], plain["compression.type"]) == (5, "lz4")
    told = CommonSettings(kafka_props=props(linger_ms="20", compression_type="zstd", acks="1"))
    conf = producer_config(told)
    assert (conf["linger.ms"], conf["compression.type"]) == ("20", "zstd")
    # what exactly once rests on is never changed by a passthrough property
    assert (conf["acks"], conf["enable.idempotence"]) == ("all", True)


def test_the_stages_at_the_providers_rate_do_not_linger_unless_told() -> None:
    assert prompt_producer_config(CommonSettings())["linger.ms"] == 0
    told = CommonSettings(kafka_props=props(linger_ms="3"))
    assert prompt_producer_config(told)["linger.ms"] == "3"
    assert prompt_producer_config(CommonSettings())["acks"] == "all"
