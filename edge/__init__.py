"""Edge agents: ``kickstand.edge.core`` (shared: disk queue, cloud link, settings, health),
``kickstand.edge.transports`` (serial, NFC, station inputs, …), ``kickstand.edge.station``
and ``kickstand.edge.vehicle``."""
