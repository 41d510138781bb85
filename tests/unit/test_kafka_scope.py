"""Passthrough properties reach only the clients that read them: no CONFWARN lines."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from shared.kafka.config import consumer_config, producer_config
from shared.kafka.scope import CONSUMER_ONLY, PRODUCER_ONLY, passthrough
from shared.kafka.startup import PROBE
from shared.settings import CommonSettings

# what a fleet sets: static membership and fetch tuning (consumer), linger and
# compression (producer), a socket option (every client)
PROPS = {"group.instance.id": "enrich-0", "session.timeout.ms": "30000",
         "fetch.min.bytes": "1024", "linger.ms": "7", "compression.type": "zstd",
         "socket.keepalive.enable": "true"}  # fmt: skip
# nothing listens there: the clients start, log their configuration warnings and stop
SETTINGS = CommonSettings(kafka_bootstrap="127.0.0.1:9",
                          kafka_props={k: SecretStr(v) for k, v in PROPS.items()})  # fmt: skip


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def confwarns(make: Any, conf: dict[str, Any]) -> list[str]:
    """The CONFWARN lines librdkafka logs when a client of ``make`` starts with ``conf``."""
    logger = logging.getLogger(f"test.scope.{id(conf)}")
    logger.propagate = False
    lines = Lines()
    logger.addHandler(lines)
    client = make({**conf, "logger": logger})
    client.poll(0.2) if not isinstance(client, Consumer) else client.consume(1, 0.2)
    if isinstance(client, Consumer):
        client.close()
    return [line for line in lines.lines if "CONFWARN" in line]


def test_each_kind_of_client_gets_the_passthrough_properties_it_reads() -> None:
    assert set(passthrough(PROPS, "any")) == set(PROPS)
    assert set(passthrough(PROPS, "producer")) == {"linger.ms", "compression.type",
                                                   "socket.keepalive.enable"}  # fmt: skip
    assert set(passthrough(PROPS, "consumer")) == {"group.instance.id", "session.timeout.ms",
                                                   "fetch.min.bytes", "socket.keepalive.enable"}  # fmt: skip
    assert set(passthrough(PROPS, "admin")) == {"socket.keepalive.enable"}
    producer, consumer = producer_config(SETTINGS), consumer_config(SETTINGS, "g")
    assert producer["linger.ms"] == "7" and "group.instance.id" not in producer
    assert consumer["group.instance.id"] == "enrich-0" and "linger.ms" not in consumer
    assert consumer["socket.keepalive.enable"] == producer["socket.keepalive.enable"] == "true"


@pytest.mark.parametrize("kind", ["producer", "consumer", "admin"])
def test_clients_made_from_the_passthrough_log_no_configuration_warning(kind: str) -> None:
    make: Any = {"producer": Producer, "consumer": Consumer, "admin": AdminClient}[kind]
    everything = SETTINGS.kafka_config("any", **({"group.id": "g"} if kind == "consumer" else {}))
    assert confwarns(make, everything), "the sample must warn when passed whole"
    conf = {"producer": producer_config(SETTINGS), "consumer": consumer_config(SETTINGS, "g"),
            "admin": SETTINGS.kafka_config("admin")}[kind]  # fmt: skip
    conf.pop("logger", None)
    assert confwarns(make, conf) == []


@pytest.mark.parametrize("name", sorted(CONSUMER_ONLY | PRODUCER_ONLY))
def test_every_listed_property_is_one_librdkafka_knows(name: str) -> None:
    """A typo in the lists would let a property through to the wrong client. librdkafka
    sets properties in order: a known one is refused for its value or taken, and then the
    probe after it is refused as unknown."""
    with pytest.raises(KafkaException) as err:
        AdminClient({name: "not a value of any property", PROBE: "1"})
    assert f'No such configuration property: "{name}"' not in str(err.value)
