"""fakellm's HTTP 200 error bodies, one per ``error_body_kind``, as enrich classifies them."""

import pytest

from services.enrich.classify import classify_response
from services.fakellm.dialects import ANTHROPIC, OPENAI, Dialect
from shared.kinds import FailureKind as K
from shared.outcomes import Failure


@pytest.mark.parametrize(
    ("dialect", "provider", "kind", "expected"),
    [
        (OPENAI, "openai", None, K.RATE_LIMITED),
        (OPENAI, "openai", "rate_limit", K.RATE_LIMITED),
        (OPENAI, "openai", "overloaded", K.OVERLOADED),
        (OPENAI, "openai", "server_error", K.PROVIDER_ERROR),
        (ANTHROPIC, "anthropic", None, K.OVERLOADED),
        (ANTHROPIC, "anthropic", "rate_limit", K.RATE_LIMITED),
        (ANTHROPIC, "anthropic", "overloaded", K.OVERLOADED),
        (ANTHROPIC, "anthropic", "server_error", K.PROVIDER_ERROR),
    ],
)
def test_each_error_body_kind_reads_as_its_failure(
    dialect: Dialect, provider: str, kind: str | None, expected: K
) -> None:
    out = classify_response(provider, 200, {}, dialect.error_in_200(kind), 0.0)
    assert isinstance(out, Failure)
    assert out.kind is expected
