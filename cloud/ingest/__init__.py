"""Ingest workers: device messages from MQTT into the database, trips and telemetry.

    from kickstand.cloud.ingest import IngestWorker

    async with IngestWorker(settings.MQTT_URL, sessionmaker, telemetry=store,
                            client_id="ingest-host-1") as worker:
        ...

Any number of workers run side by side on the shared subscription
``$share/ingest/ks/v1/d/+/+`` (clean sessions: a worker that leaves strands nothing);
``shared=False`` for the embedded broker (one worker).
``python -m kickstand.cloud ingest --workers N`` runs N of them in one process.

The shape:

* ``worker`` / ``consumer`` — MQTT in (paho in the event loop), PUBACK after the commit,
  replies and end-to-end Acks out, transient errors retried with back-off;
* ``apply`` — the core: per-message checks (``rules``), dedupe, batching, dead letters,
  what is acknowledged; ``batch`` its data types and counters; ``transient`` the
  SQLSTATE rule;
* ``handlers`` — what each message does, registered per channel and event type;
* ``repository`` — the SQL, with the PostgreSQL fast paths;
* ``deadletters`` / ``replay`` — the dead-letter store and its operator side.
"""

from kickstand.cloud.ingest.apply import BatchApplier, Inbound, IngestStats
from kickstand.cloud.ingest.errors import BrokerConnectError, IngestConfigError, IngestError
from kickstand.cloud.ingest.worker import PLAIN_SUBSCRIPTION, IngestWorker

__all__ = [
    "PLAIN_SUBSCRIPTION",
    "BatchApplier",
    "BrokerConnectError",
    "Inbound",
    "IngestConfigError",
    "IngestError",
    "IngestStats",
    "IngestWorker",
]
