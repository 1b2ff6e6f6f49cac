"""Ingest workers: device messages from MQTT into the database, trips and telemetry.

    from kickstand.cloud.ingest import IngestWorker

    async with IngestWorker(settings.MQTT_URL, sessionmaker, telemetry=store,
                            client_id="ingest-host-1") as worker:
        ...

Any number of workers run side by side on the shared subscription
``$share/ingest/ks/v1/d/+/+``; ``shared=False`` for the embedded broker (one worker).
``python -m kickstand.cloud ingest --workers N`` runs N of them in one process.
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
