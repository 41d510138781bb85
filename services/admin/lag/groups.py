"""The consumer groups of a pipeline and the topics each consumes (pure).

Group names come from each service's own settings (``group``: ``group_id`` or
``P.<stage>``), so a change of the naming rule there is followed here.

=========  ================================================  ===============
group      topics                                             reads
=========  ================================================  ===============
ingest     the source topic (``SLUICE_SOURCE_TOPIC``)         read_uncommitted
enrich     ``P.work``                                         read_committed
router     ``P.failures``, ``P.parked``, ``P.retry.<rung>``   read_committed
sequencer  ``P.work``, ``P.results``                          read_committed
=========  ================================================  ===============

The topics a group's live members hold are added when read (without
``SLUICE_SOURCE_TOPIC``, ingest's source topic is known that way, while an
ingest instance runs).
The end offset of a ``read_committed`` group is the last stable offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.admin.lag.settings import LagSettings, Stage
from services.enrich.settings import EnrichSettings
from services.router.settings import RouterSettings
from services.sequencer.settings import SequencerSettings
from shared.settings import IngestSettings
from shared.topics import Topics, parse_rungs


@dataclass(frozen=True)
class GroupSpec:
    stage: Stage
    name: str
    topics: tuple[str, ...]
    read_committed: bool


def pipeline_groups(settings: LagSettings) -> tuple[GroupSpec, ...]:
    """The four groups of ``settings.pipeline`` (ConfigError on bad retry rungs)."""
    p = settings.pipeline
    topics = Topics(p, parse_rungs(settings.retry_rungs))
    named = settings.admin_lag_groups
    source = settings.source_topic or ""
    return (
        GroupSpec(
            "ingest",
            IngestSettings.model_construct(
                pipeline=p, source_topic=source, group_id=named.get("ingest")
            ).group,
            (source,) if source else (),
            read_committed=False,
        ),
        GroupSpec(
            "enrich",
            EnrichSettings.model_construct(pipeline=p, group_id=named.get("enrich")).group,
            (topics.work,),
            read_committed=True,
        ),
        GroupSpec(
            "router",
            RouterSettings.model_construct(pipeline=p, group_id=named.get("router")).group,
            (topics.failures, topics.parked, *(topics.retry(r) for r in topics.rungs)),
            read_committed=True,
        ),
        GroupSpec(
            "sequencer",
            SequencerSettings.model_construct(pipeline=p, group_id=named.get("sequencer")).group,
            (topics.work, topics.results),
            read_committed=True,
        ),
    )
