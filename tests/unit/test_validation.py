"""Validation errors as one line: each at its place, without pydantic's ``Value error,``."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from services.sequencer.settings import SequencerSettings
from shared.errors import ConfigError
from shared.settings import load
from shared.validation import one_line


class Limits(BaseModel):
    rps: int
    burst: int

    @field_validator("burst")
    @classmethod
    def small(cls, v: int) -> int:
        if v > 10:
            raise ValueError("at most 10")
        return v

    @model_validator(mode="after")
    def fits(self) -> Limits:
        if self.burst > self.rps:
            raise ValueError("burst above rps")
        return self


class Outer(BaseModel):
    limits: Limits


def errors_of(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Outer.model_validate(data)
    return info.value


def test_each_error_follows_its_dotted_place_and_a_validators_message_stands_alone() -> None:
    exc = errors_of({"limits": {"rps": "x", "burst": 11}})
    assert one_line(exc) == (
        "limits.rps: Input should be a valid integer, unable to parse string as an integer; "
        "limits.burst: at most 10"
    )


def test_an_error_of_a_whole_model_is_named_by_the_model_s_place() -> None:
    assert one_line(errors_of({"limits": {"rps": 1, "burst": 2}})) == "limits: burst above rps"


def test_a_setting_is_named_by_its_variable_without_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLUICE_SOURCE_TOPIC", "src")
    monkeypatch.setenv("SLUICE_RESTORE_TIMEOUT_S", "900")
    with pytest.raises(ConfigError) as info:
        load(SequencerSettings)
    message = str(info.value)
    assert message.startswith("invalid settings: SLUICE_RESTORE_TIMEOUT_S: at most 450 s"), message
    assert "Value error" not in message
