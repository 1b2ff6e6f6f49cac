"""Signed commands to devices over MQTT, awaited until the device answers."""
