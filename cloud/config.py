"""Settings of the cloud processes, read from the environment.

Nothing here runs at import time: call :func:`get_settings` (cached) or build
``Settings(...)`` yourself (tests do, one per test).
"""

from __future__ import annotations

import logging
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("kickstand.cloud.config")

#: Values people paste from examples; refused as JWT_SECRET outside development.
PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "changeme", "secret", "jwt-secret", "password", "kickstand", "test", "dev"}
)
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    ENVIRONMENT: Literal["development", "production"] = "development"
    #: Relative SQLite paths are relative to the working directory; the folder is created.
    DATABASE_URL: str = "sqlite+aiosqlite:///var/kickstand.sqlite3"
    #: None → the embedded in-process broker.
    MQTT_URL: str | None = None
    #: None → the local telemetry store.
    INFLUX_URL: str | None = None
    INFLUX_DATABASE: str = "kickstand"
    INFLUX_USERNAME: str | None = None
    INFLUX_PASSWORD: str | None = None
    #: HMAC key of the access tokens. Development: generated once and kept in VAR_DIR.
    JWT_SECRET: str | None = None
    JWT_ACCESS_TTL_S: int = Field(default=900, ge=30)
    JWT_REFRESH_TTL_S: int = Field(default=30 * 24 * 3600, ge=60)
    COMMAND_SIGNING_KEY_FILE: Path | None = None
    #: How long the API waits for a device's answer to a command.
    COMMAND_TIMEOUT_S: float = Field(default=5.0, gt=0)
    #: How long a command stays valid on the device (``expires_at - issued_at``, SPEC §7.1):
    #: longer than the wait, and than any clock error of a synced device (SPEC §4.8 Clock).
    COMMAND_VALID_S: float = Field(default=30.0, gt=0, le=300)
    #: How long an unlocked spot waits for the vehicle to leave before the rent expires.
    RENT_UNLOCK_WINDOW_S: int = Field(default=60, ge=5)
    VAR_DIR: Path = Path("var")
    API_HOST: str = "127.0.0.1"
    API_PORT: int = 8000
    #: Prometheus /metrics of the ingest and webhook workers (0: not served); the API
    #: serves its own on API_PORT. METRICS_TOKEN set: the API's /metrics wants it as bearer.
    METRICS_PORT: int = Field(default=9108, ge=0, le=65535)
    METRICS_TOKEN: str | None = None
    #: Ingest merges a device's end-to-end Acks over this long (SPEC §4.6): fewer bytes on
    #: a vehicle's cellular link; well below the devices' 30 s ack timeout.
    ACK_DELAY_S: float = Field(default=10.0, ge=0, le=20)
    #: Outbox records are deleted this long after their publication by the webhook delivery
    #: worker (never one an endpoint still has to receive): how far back a station's event
    #: history reaches.
    OUTBOX_RETENTION_DAYS: float = Field(default=30.0, gt=0)

    # ── device certificates (issue 17: kickstand.cloud.pki, kickstand.cloud.devices) ──
    #: The installation's device CA (ca.pem, ca.key, crl.pem; ``pki init`` writes it). None:
    #: the cloud signs no device certificate (provisioning and renewal answer unavailable).
    DEVICE_CA_DIR: Path | None = None
    #: Validity of a device certificate signed at the bench or by a renewal.
    DEVICE_CERT_VALID_DAYS: int = Field(default=365, ge=1, le=3650)
    #: Mosquitto's pid file: on a revocation the cloud sends it SIGHUP to reread the CRL
    #: (None: no broker to tell, e.g. the embedded broker of ``make run``).
    BROKER_PID_FILE: Path | None = None

    # ── firmware (issue 18: kickstand.cloud.firmware) ──
    #: The installation's firmware signing key (Ed25519), apart from the command key:
    #: ``python -m kickstand.cloud pki firmware-key`` writes one. None: development uses
    #: VAR_DIR/firmware-signing.key (created on first use); production refuses to sign.
    FIRMWARE_SIGNING_KEY_FILE: Path | None = None
    #: The content-addressed image store (None: VAR_DIR/firmware).
    FIRMWARE_STORE_DIR: Path | None = None
    #: The largest image an operator may upload.
    FIRMWARE_MAX_IMAGE_BYTES: int = Field(default=64 * 1024 * 1024, ge=1)
    #: The API's base URL as devices reach it; a manifest's url is
    #: ``<base>/v1/firmware/images/<sha256>`` (None: http://API_HOST:API_PORT).
    FIRMWARE_BASE_URL: str | None = None
    #: How often the campaign runner advances waves and sends updates.
    FIRMWARE_CAMPAIGN_EVERY_S: float = Field(default=10.0, gt=0)

    # ── rider accounts (kickstand.cloud.accounts) ──
    #: The SMTP server mails to riders go through (None: mails stay queued in
    #: ``mail_outbox`` and are sent once a server is configured). ``make run`` and the
    #: tests start an in-process sink (``kickstand.testing.mailsink``).
    SMTP_HOST: str | None = None
    SMTP_PORT: int = Field(default=25, ge=1, le=65535)
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    #: "starttls" upgrades a plain connection, "ssl" connects with TLS (port 465).
    SMTP_SECURITY: Literal["none", "starttls", "ssl"] = "none"
    SMTP_TIMEOUT_S: float = Field(default=10.0, gt=0)
    MAIL_FROM: str = "Kickstand <no-reply@kickstand.invalid>"
    #: Where the links in mails point (the app or web page that calls the API with the token).
    ACCOUNT_LINK_BASE: str = "https://app.kickstand.invalid"
    #: Mails not sent (SMTP down) are retried by every API process this often.
    MAIL_RETRY_S: float = Field(default=30.0, gt=0)
    EMAIL_CONFIRM_TTL_S: int = Field(default=48 * 3600, ge=60)
    PASSWORD_RESET_TTL_S: int = Field(default=3600, ge=60)
    EMAIL_CHANGE_TTL_S: int = Field(default=24 * 3600, ge=60)
    #: Login throttling: failed logins counted per account and per client address in a
    #: window; at the limit the key is locked (429 + Retry-After) for LOGIN_LOCK_S.
    LOGIN_WINDOW_S: int = Field(default=900, ge=1)
    LOGIN_MAX_FAILURES_ACCOUNT: int = Field(default=10, ge=1)
    LOGIN_MAX_FAILURES_ADDRESS: int = Field(default=50, ge=1)
    LOGIN_LOCK_S: int = Field(default=900, ge=1)
    #: Mails with a code (confirmation, reset, email change) asked for one address, at most
    #: this many per MAIL_WINDOW_S; more answer 429.
    MAIL_MAX_PER_ADDRESS: int = Field(default=5, ge=1)
    MAIL_WINDOW_S: int = Field(default=3600, ge=1)
    #: Accounts one client address may create per SIGNUP_WINDOW_S; more answer 429.
    SIGNUP_MAX_PER_ADDRESS: int = Field(default=20, ge=1)
    SIGNUP_WINDOW_S: int = Field(default=3600, ge=1)

    # ── operator console (kickstand.cloud.console, /console) ──
    #: A tile server for the console's map (``https://tiles.example/{z}/{x}/{y}.png``);
    #: None: the map draws the network's own geometry only (nothing is fetched elsewhere).
    CONSOLE_TILE_URL: str | None = None
    CONSOLE_TILE_ATTRIBUTION: str = ""
    #: How often the console's live feed reads new outbox records while browsers watch.
    CONSOLE_EVENTS_POLL_S: float = Field(default=0.5, gt=0, le=10)

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.JWT_SECRET is None:
            if self.ENVIRONMENT != "development":
                raise ValueError("JWT_SECRET must be set outside development")
            self.JWT_SECRET = _dev_secret(self.VAR_DIR)
        elif self.ENVIRONMENT != "development" and (
            self.JWT_SECRET.lower() in PLACEHOLDER_SECRETS
            or len(self.JWT_SECRET.encode()) < MIN_SECRET_BYTES
        ):
            raise ValueError(
                f"JWT_SECRET is a placeholder or shorter than {MIN_SECRET_BYTES} bytes; "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return self

    @property
    def jwt_secret(self) -> str:
        assert self.JWT_SECRET is not None  # set by the validator
        return self.JWT_SECRET


def _dev_secret(var_dir: Path) -> str:
    path = var_dir / "jwt-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    var_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value + "\n")
    path.chmod(0o600)
    log.info("event=dev_jwt_secret_generated path=%s", path)
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
