from pathlib import Path

import pytest

from shared.config_file import (
    FAKELLM_URL_DEFAULT,
    SENTIMENT,
    SluiceConfig,
    default_config,
    load_config,
)
from shared.errors import ConfigError
from shared.redis.bucket import ModelLimits, ProviderLimits, dims_for
from shared.redis.provider_config import bucket_limits

GOOD = """
providers:
  oa:
    kind: openai
    base_url: https://api.example.com/v1
    api_key: sk-very-secret-123
    requests_per_minute: 100
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
    models: {small: {requests_per_minute: 1000, tokens_per_minute: 5000}}
  an:
    kind: anthropic
    base_url: https://api.anthropic.com
    api_key_env: MY_ANTHROPIC_KEY
    timeout_s: 5
    extra_headers: {anthropic-version: "2023-06-01"}
tasks:
  sentiment: {model: small, providers: [oa, an], models: {an: claude-x}}
  triage:
    prompt: "{customer.name}: {text}"
    model: big
    providers: [an]
    output_schema: {type: object, required: [team], properties: {team: {type: string}}}
default_task: triage
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sluice.yaml"
    p.write_text(text)
    return p


def test_good_file(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    oa, an = c.providers["oa"], c.providers["an"]
    assert oa.kind == "openai" and oa.timeout_s == 30 and oa.max_connections == 64
    assert oa.breaker.failure_rate == 0.5 and oa.breaker.min_requests == 20
    assert oa.breaker.window_s == 30 and oa.breaker.open_s == 15
    assert oa.breaker.half_open_probes == 3
    limits = bucket_limits(oa)  # what the fleet's buckets take from
    assert limits == ProviderLimits(rpm=100, tpm=0, models={"small": ModelLimits(1000, 5000)})
    assert [d.name for d in dims_for(limits, "other")] == ["rpm"]  # the provider's budget
    assert oa.resolve_api_key() == "sk-very-secret-123"
    assert (oa.input_price_per_mtok, oa.output_price_per_mtok) == (0.15, 0.6)
    assert an.input_price_per_mtok is None and an.output_price_per_mtok is None  # no prices
    assert an.resolve_api_key({"MY_ANTHROPIC_KEY": "k2"}) == "k2"
    assert an.extra_headers == {"anthropic-version": "2023-06-01"}
    assert c.task().prompt == "{customer.name}: {text}"
    assert c.task("triage").fields == ["customer.name", "text"]
    sentiment = c.task("sentiment")  # built-in prompt, system and schema filled in
    assert sentiment.prompt == SENTIMENT["prompt"] and sentiment.system == SENTIMENT["system"]
    assert sentiment.schema_dict == SENTIMENT["output_schema"]
    assert sentiment.model_for("an") == "claude-x" and sentiment.model_for("oa") == "small"


def test_models_are_frozen(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    with pytest.raises(ValueError, match="frozen"):
        c.providers["oa"].timeout_s = 1


def test_secrets_never_print(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    for text in (repr(c), str(c), repr(c.providers["oa"]), str(c.model_dump())):
        assert "sk-very-secret-123" not in text


def test_missing_key_variable_is_a_config_error(tmp_path: Path) -> None:
    c = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="MY_ANTHROPIC_KEY"):
        c.providers["an"].resolve_api_key({})


def test_default_config() -> None:
    c = load_config(None, environ={})
    assert list(c.providers) == ["fakellm"] and c.default_task == "sentiment"
    fake = c.providers["fakellm"]
    assert fake.kind == "openai" and fake.base_url == FAKELLM_URL_DEFAULT
    assert fake.resolve_api_key({}) is None
    task = c.task()
    assert task.providers == ["fakellm"] and task.fields == ["text"]
    props = task.schema_dict["properties"]  # type: ignore[index]
    assert props["sentiment"]["enum"] == ["positive", "neutral", "negative"]
    assert (props["confidence"]["minimum"], props["confidence"]["maximum"]) == (0, 1)
    assert props["topics"] == {"type": "array", "items": {"type": "string"}}
    url = "http://fake:1/v1"
    assert default_config({"SLUICE_FAKELLM_URL": url}).providers["fakellm"].base_url == url


def test_example_file_loads() -> None:
    example = Path(__file__).parents[2] / "deploy" / "sluice.example.yaml"
    c = load_config(example)
    assert c.default_task == "sentiment" and "triage" in c.tasks


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope.yaml not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"line 3"):
        load_config(write(tmp_path, "providers:\n  a: 1\n b: [\n"))


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, text))


def mutate(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (mutate("timeout_s: 5", "timeout_s: 0"), r"providers\.an\.timeout_s: .*greater than 0"),
        (mutate("kind: anthropic", "kind: gemini"), r"providers\.an\.kind: "),
        (mutate("requests_per_minute: 100", "rpm: 100"), r"providers\.oa\.rpm: Extra inputs"),
        (
            mutate("providers: [an]", "providers: [an, nope]"),
            r"tasks\.triage\.providers\[1\]: unknown provider 'nope' \(known: an, oa\)",
        ),
        (mutate("default_task: triage", "default_task: x"), r"default_task: unknown task 'x'"),
        (
            mutate('prompt: "{customer.name}: {text}"', 'prompt: "{}"'),
            r"tasks\.triage: .*placeholders",
        ),
        (
            mutate('prompt: "{customer.name}: {text}"', 'prompt: "{text"'),
            r"tasks\.triage: prompt: ",
        ),
        (mutate("model: big", "bogus: 1"), r"tasks\.triage\.model: Field required"),
        (
            mutate("{team: {type: string}}", "{team: {type: text}}"),
            r"tasks\.triage\.output_schema\.properties\.team\.type",
        ),
        (
            mutate("{team: {type: string}}", "{team: {pattern: x}}"),
            r"output_schema\.properties\.team\.pattern: Extra inputs",
        ),
        (mutate("required: [team]", "required: [tea]"), r"required \['tea'\] not among properties"),
        (mutate("api_key_env: MY_ANTHROPIC_KEY", "api_key_env: MY\n    api_key: x"), r"not both"),
        (
            mutate('anthropic-version: "2023-06-01"', "x-api-key: sk-inline"),
            r"leave this header's value empty",
        ),
        (mutate("models: {an: claude-x}", "models: {zz: claude-x}"), r"models: \['zz'\] not among"),
        (
            mutate("output_price_per_mtok: 0.6", "output_price_per_mtok: -1"),
            r"providers\.oa\.output_price_per_mtok: .*greater than or equal to 0",
        ),
        (mutate("    output_price_per_mtok: 0.6\n", ""), r"providers\.oa: .*together"),
        (
            mutate("base_url: https://api.example.com/v1", "base_url: ftp://x"),
            r"providers\.oa\.base_url",
        ),
    ],
)
def test_validation_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert "sk-inline" not in str(info.value) and "sk-very-secret" not in str(info.value)


def test_task_selection() -> None:
    base = {"providers": {"p": {"kind": "openai", "base_url": "http://x"}}}
    one = SluiceConfig.model_validate(
        {**base, "tasks": {"t": {"prompt": "{a}", "model": "m", "providers": ["p"]}}}
    )
    assert one.task() is one.tasks["t"]
    with pytest.raises(ConfigError, match="unknown task 'u'"):
        one.task("u")
    two_tasks = {n: {"prompt": "{a}", "model": "m", "providers": ["p"]} for n in ("t", "u")}
    two = SluiceConfig.model_validate({**base, "tasks": two_tasks})
    with pytest.raises(ConfigError, match="no default_task"):
        two.task()
