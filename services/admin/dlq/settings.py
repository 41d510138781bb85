"""Settings of DLQ browsing and replays (env ``SLUICE_*``); the admin's settings extend them.

=====================================  =======  ==============================================
``SLUICE_ADMIN_REPLAY_CAP``            3        a record replayed this often already
                                                (``sluice.replay-count``) is not replayed again
``SLUICE_ADMIN_REPLAY_CANARY_SHARE``   0.5      a replay fails once more than this share of ...
``SLUICE_ADMIN_REPLAY_CANARY_FIRST``   20       ... its first this-many records with an outcome
                                                failed again
``SLUICE_ADMIN_REPLAY_TXN_TIMEOUT_S``  10       transaction timeout of a replay's producer: a
                                                killed admin's open transaction is aborted by then
``SLUICE_ADMIN_REPLAY_BATCH``          100      records sent in one transaction at most
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
    admin_replay_canary_share: float = Field(0.5, gt=0, le=1)
    admin_replay_canary_first: int = Field(20, ge=1, le=100_000)
    admin_replay_txn_timeout_s: float = Field(10.0, ge=1, le=900)
    admin_replay_batch: int = Field(100, ge=1, le=10_000)
    admin_replay_window: int = Field(64, ge=1, le=1_000_000)
    admin_dlq_read_s: float = Field(5.0, gt=0, le=120)
    admin_dlq_scan_records: int = Field(100_000, ge=1, le=10_000_000)
    admin_dlq_preview_bytes: int = Field(1024, ge=16, le=65_536)
