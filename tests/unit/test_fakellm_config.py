import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.fakellm.config import (
    FakeLLMConfig,
    FaultMix,
    FixedLatency,
    LognormalLatency,
    UniformLatency,
    apply_update,
    load_config_file,
    parse_latency,
)
from services.fakellm.latency import sample_ms
from services.fakellm.main import run
from shared.errors import ConfigError


def test_defaults_are_fast_and_faultless() -> None:
    c = FakeLLMConfig()
    assert c.latency == FixedLatency(ms=0)
    assert (c.limits.rps, c.limits.rpm, c.limits.tpm) == (0, 0, 0)
    assert set(c.faults.probabilities().values()) == {0.0}
    assert c.hang_seconds == 600


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fixed:800", FixedLatency(ms=800)),
        ("uniform:200:2000", UniformLatency(min_ms=200, max_ms=2000)),
        ("lognormal:1000:0.5", LognormalLatency(mean_ms=1000, sigma=0.5)),
    ],
)
def test_parse_latency(spec: str, expected: object) -> None:
    assert parse_latency(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "fixed", "fixed:x", "fixed:-1", "uniform:5", "uniform:9:1", "pareto:1", "lognormal:0:1"],
)
def test_parse_latency_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="latency"):
        parse_latency(spec)


def test_lognormal_mu_gives_the_mean() -> None:
    lat = LognormalLatency(mean_ms=1000, sigma=0.5)
    assert lat.mu == pytest.approx(math.log(1000) - 0.125)
    import random

    rng = random.Random(3)
    mean = sum(sample_ms(lat, rng) for _ in range(20_000)) / 20_000
    assert mean == pytest.approx(1000, rel=0.03)


def test_uniform_samples_stay_in_range() -> None:
    import random

    rng = random.Random(3)
    lat = UniformLatency(min_ms=200, max_ms=300)
    assert all(200 <= sample_ms(lat, rng) <= 300 for _ in range(1000))


def test_fault_probabilities_must_add_up_to_at_most_one() -> None:
    FaultMix(hang=0.5, http_500=0.5)
    with pytest.raises(ValidationError, match="more than 1"):
        FaultMix(hang=0.6, http_500=0.5)
    with pytest.raises(ValidationError):
        FaultMix(hang=-0.1)


def test_partial_update_merges_and_latency_is_replaced_whole() -> None:
    c = FakeLLMConfig(latency=UniformLatency(min_ms=1, max_ms=2))
    c2 = apply_update(c, {"limits": {"rpm": 10}, "faults": {"hang": 0.1}})
    assert (c2.limits.rpm, c2.limits.rps, c2.faults.hang) == (10, 0, 0.1)
    assert c2.latency == c.latency
    c3 = apply_update(c2, {"latency": {"kind": "fixed", "ms": 5}})
    assert c3.latency == FixedLatency(ms=5)
    assert c3.limits.rpm == 10
    c4 = apply_update(c3, {"latency": {"ms": 7}})  # same kind: merged
    assert c4.latency == FixedLatency(ms=7)


@pytest.mark.parametrize(
    "update",
    [{"limits": {"rps": -1}}, {"bogus": 1}, {"hang_seconds": 0}, {"latency": {"kind": "x"}}],
)
def test_bad_updates_are_refused(update: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        apply_update(FakeLLMConfig(), update)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        FakeLLMConfig().hang_seconds = 1


def test_load_config_file_json_and_yaml(tmp_path: Path) -> None:
    j = tmp_path / "c.json"
    j.write_text('{"limits": {"rps": 5}, "latency": {"kind": "fixed", "ms": 3}}')
    assert load_config_file(j).limits.rps == 5
    y = tmp_path / "c.yaml"
    y.write_text("faults:\n  http_500: 0.25\nseed: 9\n")
    c = load_config_file(y)
    assert (c.faults.http_500, c.seed) == (0.25, 9)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("bad.json", "{", "not valid json"),
        ("list.yaml", "- 1\n", "mapping"),
        ("range.json", '{"faults": {"hang": 2}}', "faults.hang"),
    ],
)
def test_load_config_file_errors(tmp_path: Path, name: str, text: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config_file(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "argv",
    [
        ["--latency", "bogus"],
        ["--latency", "uniform:9:1"],
        ["--rps", "-1"],
        ["--rpm", "x"],
        ["--port", "70000"],
        ["--config", "/nonexistent/fakellm.json"],
        ["--nope"],
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fakellm: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_cli_bad_environment_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLUICE_FAKELLM_RPM", "lots")
    assert run([]) == 2
    assert "SLUICE_FAKELLM_" in capsys.readouterr().err
