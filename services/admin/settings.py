"""Settings of the admin service (env ``SLUICE_*``; the tokens are secrets)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.admin.autoscale.settings import AutoscaleSettings
from services.admin.dlq.settings import DlqSettings
from services.admin.lag.settings import LagSettings


class AdminSettings(LagSettings, DlqSettings, AutoscaleSettings):
    """``admin_token`` / ``admin_viewer_token`` or their ``*_file`` twins (a mounted
    secret); see :mod:`services.admin.tokens` for how they are read and checked. The lag
    sampler's settings (``SLUICE_ADMIN_LAG_*``) come from :class:`LagSettings`, the DLQ
    reads' and replays' (``SLUICE_ADMIN_DLQ_*``, ``SLUICE_ADMIN_REPLAY_CAP``) from
    :class:`DlqSettings`, the useful-workers gauge's (``SLUICE_ADMIN_AUTOSCALE_*``) from
    :class:`AutoscaleSettings`."""

    admin_host: str = Field("127.0.0.1", min_length=1)
    admin_port: int = Field(8700, ge=0, le=65535)
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    admin_viewer_token: SecretStr | None = None
    admin_viewer_token_file: Path | None = None
    admin_cors_origins: str = ""  # comma-separated origins; empty: no CORS headers at all
    admin_audit_timeout_s: float = Field(5.0, gt=0, le=60)

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in self.admin_cors_origins.split(",") if o.strip()]
