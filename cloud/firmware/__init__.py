"""Firmware images, signed manifests and campaigns (issue 18).

* :mod:`~kickstand.cloud.firmware.keys` — the installation's firmware signing key;
* :mod:`~kickstand.cloud.firmware.store` — the content-addressed image store;
* :mod:`~kickstand.cloud.firmware.service` — images, campaigns, maintenance windows;
* :mod:`~kickstand.cloud.firmware.progress` — what a device's FirmwareStatus does;
* :mod:`~kickstand.cloud.firmware.runner` — the periodic task that advances campaigns.

Routes: ``kickstand.cloud.api.routes.firmware``; the wire contract: protocol/SPEC.md §13
and :mod:`kickstand.protocol.firmware`.
"""
