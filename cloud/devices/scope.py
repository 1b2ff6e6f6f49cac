"""The network a device belongs to, as a SQL expression (shared by the device registry and
firmware campaigns; it needs only the models, so either can import it without the ingest)."""

from __future__ import annotations

from sqlalchemy import func

from kickstand.cloud.models import Cluster, Vehicle

#: The network of a device: its station's cluster's, or its vehicle's (None: attached to
#: nothing). A query using it joins Station → Cluster and Vehicle to Device.
NETWORK = func.coalesce(Cluster.network_id, Vehicle.network_id)
