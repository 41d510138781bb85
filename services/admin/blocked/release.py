"""A release and its audit record, written in one Kafka transaction (I/O).

A release cannot be undone, so :mod:`services.admin.audited`'s "change, audit,
undo on failure" does not fit it. Both records go to the same cluster
(``P.results`` and ``P.audit``), so they are written atomically instead:

    begin → release record (P.results) → audit record (P.audit) → commit
      committed    → both exist for read_committed readers (the sequencer, GET /v1/audit)
      aborted      → neither exists; the answer is a 503 saying nothing was released
      commit stuck → the outcome is unknown (both or neither): a 503 says so, and
                     GET /v1/blocked and GET /v1/audit tell which

A record the broker has not acknowledged within half the audit timeout fails
(``message.timeout.ms``), which aborts the transaction: so a topic that is gone
or a broker that does not answer ends in "nothing released", not "unknown".

If the admin process dies inside the transaction, the broker aborts it after
``transaction.timeout.ms`` (:data:`TXN_TIMEOUT_MS`); until then ``read_committed``
readers of that ``P.results`` partition (the sequencer) wait, and a restarted
process does not shorten that (each process has its own ``transactional.id``,
``P.admin.<host>.<pid>``, so two admin replicas never fence each other).

One :class:`ReleaseWriter` per app, made on its first release; it blocks
(call it in a worker thread) and does one transaction at a time.
"""

from __future__ import annotations

import os
import socket
import threading

from services.admin.audit import encode
from services.admin.models import AuditRecord
from services.admin.settings import AdminSettings
from services.sequencer.blocked import release_record
from shared.errors import DeliveryError, TransactionError
from shared.headers import SourceId
from shared.kafka.config import producer_config
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnAborted, TxnProducer
from shared.topics import Topics

TXN_TIMEOUT_MS = 15_000
"""How long an admin transaction left open (the process died in it) holds up readers."""


class NothingReleased(DeliveryError):
    """The transaction was aborted: neither the release nor its audit record exists."""


class ReleaseWriter:
    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        topics = Topics(settings.pipeline)
        self.results, self.audit = topics.results, topics.audit
        self.txn_id = f"{settings.pipeline}.admin.{socket.gethostname()}.{os.getpid()}"
        self._txn: TxnProducer | None = None
        self._lock = threading.Lock()

    def write(self, key: bytes, head: SourceId, record: AuditRecord) -> None:
        """Release ``head`` of ``key`` with its audit record, both or neither.

        NothingReleased: aborted, nothing written. TransactionError: the
        producer failed for good (it is made anew next time); if that was the
        commit, the outcome is unknown.
        """
        k, v, headers = release_record(key, head)
        with self._lock:
            txn = self._producer()
            try:
                txn.begin()
                txn.produce(self.results, v, k, headers)
                txn.produce(self.audit, encode(record), record.target.encode())
                txn.commit([], None)
            except TxnAborted as exc:
                raise NothingReleased(f"the transaction was aborted ({exc.cause})") from exc
            except TransactionError:
                self._txn = None
                raise
            except DeliveryError as exc:  # a produce refused: abort what is open
                txn.abort_quietly()
                if txn.broken is not None:
                    self._txn = None
                raise NothingReleased(str(exc)) from exc

    def _producer(self) -> TxnProducer:
        if self._txn is None:
            # A record not acknowledged in half the audit timeout fails the transaction, so
            # the commit ends in an abort (nothing released) rather than in a timeout.
            audit_ms = self.settings.admin_audit_timeout_s * 1000
            conf = producer_config(self.settings, **{
                "transactional.id": self.txn_id, "transaction.timeout.ms": TXN_TIMEOUT_MS,
                "message.timeout.ms": max(1000, int(audit_ms / 2))})  # fmt: skip
            # init_transactions finds the coordinator (once): the start-up bound; every
            # call of a release then has the audit timeout.
            txn = TxnProducer(conf, self.settings.startup_timeout_s, StopFlag())
            txn.init()
            txn.call_timeout_s = self.settings.admin_audit_timeout_s
            self._txn = txn
        return self._txn
