"""Signed commands to devices over MQTT, awaited until the device answers.

    from kickstand.cloud.commands import MqttCommandGateway, load_signer

    gateway = MqttCommandGateway.from_settings(settings, sessionmaker, mqtt_url=url)
    async with gateway:
        app = create_app(settings, command_gateway=gateway)

The public key devices must trust: ``kickstand.cloud.commands.keys``.
"""

from kickstand.cloud.commands.errors import (
    CommandError,
    CommandKeyError,
    CommandTimeoutError,
    DeviceOfflineError,
)
from kickstand.cloud.commands.gateway import (
    RESULT_FILTER,
    CommandReply,
    MqttCommandGateway,
    create_gateway,
)
from kickstand.cloud.commands.keys import (
    load_signer,
    provisioning_document,
    publish_public_key,
    trusted_keys,
)

__all__ = [
    "RESULT_FILTER",
    "CommandError",
    "CommandKeyError",
    "CommandReply",
    "CommandTimeoutError",
    "DeviceOfflineError",
    "MqttCommandGateway",
    "create_gateway",
    "load_signer",
    "provisioning_document",
    "publish_public_key",
    "trusted_keys",
]
