"""Alembic environment: run programmatically by :func:`kickstand.cloud.migrations.upgrade`.

The caller passes an open (sync-facade) connection in ``config.attributes["connection"]``;
there is no alembic.ini and no URL is read from a file.
"""

from __future__ import annotations

from alembic import context

# Tables defined outside models.py must be registered on Base.metadata before autogenerate.
import kickstand.cloud.access.models  # roles, organizational_units, access_logs, …
import kickstand.cloud.accounts.models  # user_devices, user_wallets, user_api_requests
import kickstand.cloud.alerts.models  # fleet_alerts
import kickstand.cloud.authlist.tables  # auth_lists, station_auth_lists, auth_list_sends
import kickstand.cloud.devices.certificates  # device_certificates
import kickstand.cloud.feeds.mds.models  # mds_agency_tokens
import kickstand.cloud.firmware.models  # firmware_images, firmware_campaigns, …
import kickstand.cloud.ingest.tables  # ingest/commands tables
import kickstand.cloud.networks.models  # network_access_rules, network_speed_settings, …
import kickstand.cloud.operations.models  # maintenances, reports, trip_billing_stops
import kickstand.cloud.stations.models  # cluster_descriptions, cluster_pictures, device_outages
import kickstand.cloud.stats.models  # indexes of the dashboard's aggregates
import kickstand.cloud.stocks.models  # stocks
import kickstand.cloud.vehicles.models  # vehicle_decommissions, vehicle_external_locks
import kickstand.cloud.webhooks.models  # noqa: F401  (webhook_* tables)
from kickstand.cloud.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `python -m kickstand.cloud migrate`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
