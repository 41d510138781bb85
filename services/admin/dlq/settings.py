"""Settings of DLQ browsing and replays (env ``SLUICE_*``); the admin's settings extend them.

=====================================  =======  ==============================================
``SLUICE_ADMIN_REPLAY_CAP``            3        a record replayed this often already
                                                (``sluice.replay-count``) is not replayed again
``SLUICE_ADMIN_DLQ_READ_S``            5        time budget of one request's read of a DLQ
``SLUICE_ADMIN_DLQ_SCAN_RECORDS``      100000   record budget of one request's read of a DLQ
``SLUICE_ADMIN_DLQ_PREVIEW_BYTES``     1024     a key, value or header shows at most this many
                                                bytes
=====================================  =======  ==============================================
"""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class DlqSettings(CommonSettings):
    admin_replay_cap: int = Field(3, ge=1, le=1000)
    admin_dlq_read_s: float = Field(5.0, gt=0, le=120)
    admin_dlq_scan_records: int = Field(100_000, ge=1, le=10_000_000)
    admin_dlq_preview_bytes: int = Field(1024, ge=16, le=65_536)
