"""Agent settings: a file (TOML or YAML) plus environment overrides (``KICKSTAND_*``).

Precedence, highest first: keyword arguments, environment (``KICKSTAND_MQTT_PORT=1884``,
names in any case; a list or mapping field as JSON, ``KICKSTAND_COMMAND_KEYS='["ab.."]'``;
nested with ``__``), the file given to :meth:`EdgeSettings.load`, the defaults.
Agents subclass :class:`EdgeSettings` and add their own fields.

A plain pydantic model reads those sources itself (:func:`_sources`): pydantic-settings
brought ~5 MB of resident memory to a station that only needs these three sources (its
CLI, dotenv and cloud secret-store providers, importlib.metadata, argparse, zipfile;
benchmarks/station_footprint.py, issue 17).

At run time a Config command changes the keys an agent names in ``CONFIGURABLE``
(SPEC §7.5): :meth:`EdgeSettings.with_values` checks each value's type strictly against
the field, then validates the whole model again, so the agent swaps in new settings
all or nothing (never a half-applied Config, never a value its validators refuse).
"""

from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from kickstand.edge.core.clock import DeviceClock
from kickstand.edge.core.errors import CommandRefused, ConfigError
from kickstand.edge.core.link import LinkConfig
from kickstand.protocol import topics
from kickstand.protocol.errors import TopicError
from kickstand.protocol.signing import CommandVerifier, ReplayGuard, key_id
from kickstand.protocol.v1.enums import RejectReason

_config_file: ContextVar[Path | None] = ContextVar("kickstand_edge_config_file", default=None)


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML (``.toml``) or YAML (``.yaml``/``.yml``) mapping; ConfigError otherwise."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    else:
        import yaml  # only YAML users pay for it (a device counts its megabytes)

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


ENV_PREFIX = "KICKSTAND_"
ENV_NESTED = "__"


def _is_complex(annotation: Any) -> bool:
    """A field the environment gives as JSON (a list, a mapping, a model), as
    pydantic-settings did; ``X | None`` is looked through."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_complex(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and (
        issubclass(origin, (list, tuple, set, frozenset, dict)) or issubclass(origin, BaseModel)
    )


def _environment(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``KICKSTAND_*`` variables naming a field (any case): complex fields decoded from
    JSON, ``FIELD__KEY`` nested into a complex field."""
    values: dict[str, Any] = {}
    prefix = ENV_PREFIX.lower()
    for raw_name, text in environ.items():
        name = raw_name.lower()
        if not name.startswith(prefix):
            continue
        path = name[len(prefix):].split(ENV_NESTED)
        field = model.model_fields.get(path[0])
        if field is None:
            continue
        value: Any = text
        if _is_complex(field.annotation) and len(path) == 1:
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"{raw_name}: not JSON ({exc})") from None
        elif len(path) > 1 and not _is_complex(field.annotation):
            continue
        target = values
        for key in path[:-1]:
            nested = target.setdefault(key, {})
            if not isinstance(nested, dict):
                break
            target = nested
        else:
            target[path[-1]] = value
    return values


def _merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, mappings merged key by key (pydantic-settings' deep update)."""
    merged = dict(low)
    for key, value in high.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def _sources(model: type[BaseModel], init: Mapping[str, Any]) -> dict[str, Any]:
    """The values a settings model validates: keyword arguments, over the environment,
    over the file of :meth:`EdgeSettings.load` (its known keys only)."""
    path = _config_file.get()
    data = read_config_file(path) if path is not None else {}
    from_file = {k: v for k, v in data.items() if k in model.model_fields}
    return _merge(_merge(from_file, _environment(model, os.environ)), init)


class EdgeSettings(BaseModel):
    """What every agent needs: identity, broker, state directory, trusted command keys."""

    # As pydantic-settings had them: defaults validated too, unknown keys ignored.
    model_config = ConfigDict(extra="ignore", validate_default=True)

    #: The fields a Config command may change (SPEC §7.5); every other one is the file's.
    CONFIGURABLE: ClassVar[frozenset[str]] = frozenset()

    device_id: str
    firmware: str = ""  # the version this agent runs (the birth's), until one is installed
    hardware: str = ""
    mqtt_url: str = "mqtt://127.0.0.1:1883"  # mqtt[s]://[user:password@]host:port
    # mqtts:// (TLS, port 8883 by default): the installation's CA the broker is verified
    # against (None: the system's CAs), and the device's certificate (CN = device_id) and
    # key, PEM files made at the bench (issue 17). Relative paths are taken from the cwd.
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    # The name the broker's certificate carries when the device does not dial it by that
    # name (a local proxy at 127.0.0.1): checked instead of the URL's host, never skipped.
    broker_server_name: str | None = None
    state_dir: Path = Path("./state")
    # Raw Ed25519 public keys (hex) of the cloud's command signers; kid = first 8 bytes.
    command_keys: list[str] = Field(default_factory=list)
    # The installation's firmware signing keys (SPEC §13.2), apart from the command keys:
    # raw Ed25519 public keys as hex, or paths of files of them (one per line).
    firmware_public_keys: list[str] = Field(default_factory=list)
    bootloader: str = ""  # the bootloader's version (a manifest's min_bootloader)
    # A new slot must reach the cloud and pass its self-check within this (SPEC §13.6).
    firmware_trial_s: float = Field(default=300.0, gt=0)
    max_clock_skew_ms: int = 30_000
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_stable_s: float = 60.0  # a connection up this long resets the back-off
    boot_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_commands_in_flight: int = Field(default=64, ge=1)  # concurrent ones; beyond: BUSY
    # End-to-end acks (SPEC §4.6): keep each message until the cloud's Ack, resend after this.
    acks: bool = True
    ack_timeout_s: float = Field(default=30.0, gt=0)
    queue_max_telemetry: int = 10_000
    queue_synchronous: str = "FULL"
    health_host: str = "127.0.0.1"
    health_port: int | None = None  # None: no health endpoint
    log_level: str = "INFO"

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        try:
            return topics.validate_device_id(value)
        except TopicError as exc:
            raise ValueError(exc.reason) from None

    def __init__(self, **values: Any) -> None:
        super().__init__(**_sources(type(self), values))

    # pydantic calls a model's own __init__ from model_validate unless told it is the base
    # one: with_values' model_validate must not read the environment again.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: Path | str | None = None, **overrides: Any) -> Self:
        """Settings from ``path`` (may be None), the environment and ``overrides``."""
        token = _config_file.set(Path(path) if path is not None else None)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigError(f"invalid settings: {exc}") from exc
        finally:
            _config_file.reset(token)

    def with_values(self, values: Mapping[str, Any]) -> Self:
        """These settings with a Config's ``values``, validated as a whole: all or nothing.

        CommandRefused NOT_SUPPORTED for keys outside ``CONFIGURABLE`` (all of them named),
        MALFORMED for a value of the wrong type (strictly: no bool for an int, no text for a
        number) or one the model's validators refuse.
        """
        unknown = sorted(set(values) - self.CONFIGURABLE)
        if unknown:
            raise CommandRefused(RejectReason.NOT_SUPPORTED, "unknown keys: " + ",".join(unknown))
        for key, value in values.items():
            annotation = type(self).model_fields[key].annotation or Any
            try:
                TypeAdapter[Any](annotation).validate_python(value, strict=True)
            except ValidationError:
                raise CommandRefused(RejectReason.MALFORMED, f"{key}: {value!r}"[:100]) from None
        try:
            # model_validate, not the constructor: the file and environment are not read again.
            return self.model_validate({**self.model_dump(), **values})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "config"
            raise CommandRefused(RejectReason.MALFORMED, f"{where}: {error['msg']}"[:100]) from None

    def trusted_keys(self) -> dict[bytes, bytes]:
        keys: dict[bytes, bytes] = {}
        for text in self.command_keys:
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise ConfigError(f"command key {text!r} is not hex") from None
            if len(raw) != 32:
                raise ConfigError(f"command key {text!r} is not 32 bytes")
            keys[key_id(raw)] = raw
        return keys

    def link_config(self) -> LinkConfig:
        url = urlsplit(self.mqtt_url)
        if url.scheme not in {"mqtt", "tcp", "mqtts", "ssl", ""} or not url.hostname:
            raise ConfigError(
                f"mqtt_url {self.mqtt_url!r}: expected mqtt://host:port or mqtts://host:port"
            )
        tls = url.scheme in {"mqtts", "ssl"}
        if not tls and (self.mqtt_cert_file or self.mqtt_key_file):
            # A certificate configured for a plain URL would be silently unused: the device
            # would connect without its identity (and be refused by a TLS-only broker).
            raise ConfigError(
                f"mqtt_url {self.mqtt_url!r} is not mqtts:// but a client certificate is set"
            )
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ConfigError("mqtt_cert_file and mqtt_key_file go together")
        if self.broker_server_name and not tls:
            raise ConfigError(f"broker_server_name is set but mqtt_url {self.mqtt_url!r} is "
                              "not mqtts:// (there is no certificate to check it against)")
        return LinkConfig(
            device_id=self.device_id,
            host=url.hostname,
            port=url.port or (8883 if tls else 1883),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            keepalive_s=self.keepalive_s,
            reconnect_min_s=self.reconnect_min_s,
            reconnect_max_s=self.reconnect_max_s,
            reconnect_stable_s=self.reconnect_stable_s,
            boot_timeout_s=self.boot_timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            max_commands_in_flight=self.max_commands_in_flight,
            acks=self.acks,
            ack_timeout_s=self.ack_timeout_s,
            tls=tls,
            ca_file=str(self.mqtt_ca_file) if self.mqtt_ca_file else None,
            cert_file=str(self.mqtt_cert_file) if self.mqtt_cert_file else None,
            key_file=str(self.mqtt_key_file) if self.mqtt_key_file else None,
            server_name=self.broker_server_name or None,
        )

    def verifier(self, clock: DeviceClock, replay_guard: ReplayGuard) -> CommandVerifier:
        """The command verifier for this device, on the device clock."""
        return CommandVerifier(
            self.device_id,
            self.trusted_keys(),
            replay_guard,
            clock=clock.now_ms,
            max_skew_ms=self.max_clock_skew_ms,
        )
