import pytest
from pydantic import ValidationError

from services.sequencer.settings import RESTORE_TIMEOUT_MAX_S, SequencerSettings
from shared.errors import ConfigError, TopicError
from shared.kafka.provision import check_layout
from shared.kinds import FailureKind
from shared.settings import CommonSettings, IngestSettings, load, load_with_flags
from shared.topics import Rung, Topics, parse_rungs


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_KAFKA_PROP_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SLUICE_REDIS_URL", "redis://:topsecret@host:6379/0")
    s = load(CommonSettings)
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert "topsecret" not in repr(s)
    assert s.kafka_config()["sasl.password"] == "hunter2"


def test_settings_are_frozen() -> None:
    s = load(CommonSettings)
    with pytest.raises(ValidationError):
        s.pipeline = "other"  # type: ignore[misc]


def test_a_flag_given_overrides_the_environment_and_one_not_given_leaves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_SOURCE_TOPIC", "from-env")
    monkeypatch.setenv("SLUICE_INPUT_FORMAT", "bytes")
    s = load_with_flags(IngestSettings, source_topic="from-flag", input_format=None)
    assert (s.source_topic, s.input_format) == ("from-flag", "bytes")
    with pytest.raises(ConfigError, match="SLUICE_INPUT_FORMAT"):
        load_with_flags(IngestSettings, input_format="xml")


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PARTITIONS", "zero")
    with pytest.raises(ConfigError, match="SLUICE_PARTITIONS"):
        load(CommonSettings)
    monkeypatch.delenv("SLUICE_PARTITIONS")
    with pytest.raises(ConfigError, match="SLUICE_SOURCE_TOPIC"):
        load(IngestSettings)
    with pytest.raises(ConfigError, match="not a valid Kafka topic"):
        load(IngestSettings, source_topic="bad topic!")


def test_a_restore_timeout_beyond_half_the_tombstone_retention_is_refused() -> None:
    assert load(SequencerSettings, restore_timeout_s=RESTORE_TIMEOUT_MAX_S).restore_timeout_s == 450
    with pytest.raises(ConfigError, match=r"SLUICE_RESTORE_TIMEOUT_S.*tombstone retention"):
        load(SequencerSettings, restore_timeout_s=451)


def test_rungs() -> None:
    assert parse_rungs("5s,1m,10m") == (Rung("5s", 5), Rung("1m", 60), Rung("10m", 600))
    for bad in ("", "5x", "1m,5s", "0s"):
        with pytest.raises(ConfigError):
            parse_rungs(bad)


def test_topic_names_and_co_partitioning() -> None:
    t = Topics("p", parse_rungs("5s,1m"))
    names = [s.name for s in t.specs(4)]
    assert {"p.work", "p.results", "p.failures", "p.parked", "p.output", "p.retry.5s",
            "p.retry.1m", "p.dlq.poison", "p.dlq.timeout", "p.dlq.error",
            "p.sequencer.state"} <= set(names)  # fmt: skip
    state = next(s for s in t.specs(4) if s.name == t.state)
    assert state.config["cleanup.policy"] == "compact"
    assert t.co_partitioned == ("p.work", "p.results", "p.sequencer.state")


def test_compacted_topics_roll_and_forget_tombstones_within_a_restore() -> None:
    """Kafka compacts only closed segments and keeps a cleaned tombstone for
    ``delete.retention.ms``: both bound what a restore from the start reads."""
    t = Topics("p")
    specs = {s.name: s.config for s in t.specs(4)}
    restore_timeout_ms = 1000 * SequencerSettings.model_fields["restore_timeout_s"].default
    for name in (t.state, t.replays):
        c = specs[name]
        assert c["cleanup.policy"] == "compact"
        assert int(c["segment.ms"]) <= 15 * 60_000, name  # not the broker's 7 days
        assert int(c["delete.retention.ms"]) <= 60 * 60_000, name  # not its day
        assert int(c["delete.retention.ms"]) > 2 * restore_timeout_ms, name
    state = specs[t.state]
    assert int(state["max.message.bytes"]) < int(state["segment.bytes"]) <= 256 * 1024 * 1024


def test_layout_conflicts_are_reported() -> None:
    t = Topics("p")
    specs = t.specs(4)
    check_layout(specs, {"p.work": 4, "p.results": 4}, t.co_partitioned)
    with pytest.raises(TopicError, match=r"p\.work has 3 partitions"):
        check_layout(specs, {"p.work": 3}, t.co_partitioned)


def test_failure_kinds_know_their_path() -> None:
    assert not FailureKind.BAD_REQUEST.retryable
    assert FailureKind.TIMEOUT.dlq_suffix == "timeout"
    assert FailureKind.PROVIDER_ERROR.dlq_suffix == "error"
    with pytest.raises(ValueError, match="unknown failure kind"):
        FailureKind.parse("nope")
