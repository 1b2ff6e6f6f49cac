"""`python -m kickstand.cloud <subcommand>`: migrate, seed, create-admin, pki, api, ingest,
webhooks."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports what a subcommand needs when it runs
    from cryptography import x509

    from kickstand.cloud.pki import CertificateAuthority


def _migrate(_args: argparse.Namespace) -> int:
    from kickstand.cloud.config import get_settings
    from kickstand.cloud.migrations import upgrade

    settings = get_settings()
    asyncio.run(upgrade(settings.DATABASE_URL))
    print(f"database migrated to head: {_safe_url(settings.DATABASE_URL)}")
    return 0


def _seed(_args: argparse.Namespace) -> int:
    from kickstand.cloud.config import get_settings
    from kickstand.cloud.seed import DemoSeedRefusedError, run_seed

    settings = get_settings()
    try:
        report = asyncio.run(run_seed(settings.DATABASE_URL, environment=settings.ENVIRONMENT))
    except DemoSeedRefusedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _create_admin(args: argparse.Namespace) -> int:
    import getpass

    from sqlalchemy.exc import DBAPIError

    from kickstand.cloud.accounts.admin import WeakPasswordError, create_admin
    from kickstand.cloud.accounts.errors import EmailTakenError
    from kickstand.cloud.config import get_settings

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 2
    settings = get_settings()
    try:
        user_id = asyncio.run(
            create_admin(settings.DATABASE_URL, args.email, password, args.full_name)
        )
    except (WeakPasswordError, EmailTakenError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(
            f"error: the database {_safe_url(settings.DATABASE_URL)} cannot take the account "
            f"({type(exc.orig).__name__}): is it reachable and migrated "
            "(`python -m kickstand.cloud migrate`)?",
            file=sys.stderr,
        )
        return 1
    print(f"administrator {args.email.strip().lower()} created (user id {user_id})")
    return 0


async def _sign_and_record(
    ca: CertificateAuthority, csr_pem: bytes, device_id: str, kind: str, days: int
) -> x509.Certificate:
    """Through identity.provision, as POST /v1/dashboard/devices/provision (a global grant:
    whoever runs this holds the CA key)."""
    from kickstand.cloud.config import get_settings
    from kickstand.cloud.db import create_engine, create_sessionmaker
    from kickstand.cloud.devices import identity
    from kickstand.cloud.models import DeviceKind

    engine = create_engine(get_settings().DATABASE_URL)
    try:
        async with create_sessionmaker(engine)() as session:
            done = await identity.provision(
                session,
                ca,
                device_id=device_id,
                kind=DeviceKind(kind),
                csr_pem=csr_pem,
                networks=None,
                issued_by=None,
                valid_days=days,
            )
    finally:
        await engine.dispose()
    return done.issued.certificate


def _pki(args: argparse.Namespace) -> int:
    """``pki init``: the installation's device CA, the broker's server certificate, an empty
    CRL. ``pki sign-csr``: a device's certificate from its CSR (the key stays on the device),
    recorded in the registry of DATABASE_URL as the bench's provisioning endpoint does, so
    that it can be renewed and is revoked on decommission (one way in for a certificate)."""
    from pathlib import Path

    from sqlalchemy.exc import DBAPIError

    from kickstand.cloud.errors import CloudError
    from kickstand.cloud.pki import (
        CertificateAuthority,
        PkiError,
        init_directory,
        load_csr,
        pem,
    )

    if args.pki_command == "firmware-key":
        return _firmware_key(args)
    directory = Path(args.dir)
    try:
        if args.pki_command == "init":
            material = init_directory(
                directory,
                args.broker_host,
                ca_name=args.ca_name,
                ca_valid_days=args.ca_days,
                server_valid_days=args.server_days,
                force=args.force,
            )
            print(f"device CA: {material.ca_file} (key {directory / 'ca.key'}, mode 0600)")
            print(f"broker: {material.cert_file}, {material.key_file} for {args.broker_host}")
            print(f"CRL: {material.crl_file} (empty)")
            return 0
        ca = CertificateAuthority.load(directory)
        csr = load_csr(Path(args.csr).read_bytes() if args.csr != "-" else sys.stdin.buffer.read())
        cert = asyncio.run(_sign_and_record(ca, pem(csr), args.device_id, args.kind, args.days))
    except (PkiError, CloudError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(
            f"error: the device registry cannot take the certificate ({type(exc.orig).__name__}):"
            " is DATABASE_URL reachable and migrated (`python -m kickstand.cloud migrate`)?",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"error: {exc.filename or args.csr}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(pem(cert))
        print(
            f"{args.device_id}: certificate serial {cert.serial_number:x}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, written to {args.out}",
            file=sys.stderr,
        )
    else:
        sys.stdout.buffer.write(pem(cert))
    return 0


def _firmware_key(args: argparse.Namespace) -> int:
    """``pki firmware-key``: the installation's firmware signing key (issue 18), apart from
    the device CA and the command key; prints the line devices are provisioned with."""
    from pathlib import Path

    from kickstand.cloud.firmware.errors import FirmwareKeyError
    from kickstand.cloud.firmware.keys import create_key, public_document, render
    from kickstand.protocol.signing import load_private_key

    path = Path(args.file)
    try:
        key = create_key(path, force=args.force) if not args.show else load_private_key(path)
    except (FirmwareKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.show:
        print(f"firmware signing key: {path} (mode 0600); set FIRMWARE_SIGNING_KEY_FILE={path}",
              file=sys.stderr)
    print(render(public_document(key), args.format))
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from kickstand.cloud.config import get_settings

    settings = get_settings()
    uvicorn.run(
        "kickstand.cloud.api.main:create_default_app",
        factory=True,
        host=args.host or settings.API_HOST,
        port=args.port or settings.API_PORT,
        log_level="info",
    )
    return 0


def _ingest(args: argparse.Namespace) -> int:
    # ── slot: the ingest workers live in kickstand.cloud.ingest (another package's owner).
    try:
        module = importlib.import_module("kickstand.cloud.ingest.__main__")
        run = module.run
    except (ImportError, AttributeError) as exc:
        print(
            f"error: the ingest worker is not available ({exc}); "
            "expected kickstand.cloud.ingest.__main__:run",
            file=sys.stderr,
        )
        return 2
    result = run(args.rest)
    return int(result or 0)


def _webhooks(args: argparse.Namespace) -> int:
    # The worker parses its own options (argparse's REMAINDER drops leading `--options`).
    from kickstand.cloud.webhooks.__main__ import run

    return run(args.rest)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["webhooks"]:
        return _webhooks(argparse.Namespace(rest=argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m kickstand.cloud")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="bring the database (DATABASE_URL) to the latest schema")
    sub.add_parser("seed", help="load the demo network (idempotent; development only)")
    admin = sub.add_parser(
        "create-admin", help="create an administrator (the first one of a fresh deployment)"
    )
    admin.add_argument("--email", required=True)
    admin.add_argument("--full-name", default=None)
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else: asked twice)",
    )
    pki = sub.add_parser(
        "pki",
        help="the device CA: init (CA, broker certificate, CRL), sign-csr; firmware-key",
    )
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    pki_init = pki_sub.add_parser(
        "init", help="create the device CA, the broker's server certificate and an empty CRL"
    )
    pki_init.add_argument("--dir", required=True, help="directory to write (created 0700)")
    pki_init.add_argument(
        "--broker-host",
        required=True,
        action="append",
        help="a name (or IP) devices reach the broker by; repeat for several",
    )
    pki_init.add_argument("--ca-name", default="Kickstand device CA")
    pki_init.add_argument("--ca-days", type=int, default=3650)
    pki_init.add_argument("--server-days", type=int, default=825)
    pki_init.add_argument(
        "--force",
        action="store_true",
        help="replace an existing CA (every device certificate signed by it stops working)",
    )
    pki_sign = pki_sub.add_parser(
        "sign-csr", help="sign a device's CSR (PEM or DER) as its device id: CN = device id"
    )
    pki_sign.add_argument("--dir", required=True, help="the CA directory of `pki init`")
    pki_sign.add_argument("--device-id", required=True)
    pki_sign.add_argument(
        "--kind", required=True, choices=["station", "vehicle"], help="the device's kind"
    )
    pki_sign.add_argument("--csr", required=True, help="the CSR file, or - for stdin")
    pki_sign.add_argument("--days", type=int, default=365)
    pki_sign.add_argument("--out", default=None, help="certificate file (default: stdout)")
    fw_key = pki_sub.add_parser(
        "firmware-key",
        help="create the installation's firmware signing key (Ed25519, apart from the command "
        "key) and print its public half for the devices' firmware_public_keys",
    )
    fw_key.add_argument("--file", required=True, help="the key file to write (mode 0600)")
    fw_key.add_argument(
        "--force",
        action="store_true",
        help="replace an existing key (devices refuse manifests of a key they do not trust)",
    )
    fw_key.add_argument(
        "--show", action="store_true", help="print the public half of the existing key only"
    )
    fw_key.add_argument(
        "--format",
        choices=("json", "toml", "env"),
        default="json",
        help="json: {alg, crv, key_id, public_key}; toml: the firmware_public_keys line of an "
        "agent's settings; env: KICKSTAND_FIRMWARE_PUBLIC_KEYS",
    )
    api = sub.add_parser("api", help="serve the rider API with uvicorn")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    ingest = sub.add_parser("ingest", help="run an ingest worker (kickstand.cloud.ingest)")
    ingest.add_argument("rest", nargs=argparse.REMAINDER)
    webhooks = sub.add_parser("webhooks", help="run a webhook delivery worker")
    webhooks.add_argument("rest", nargs=argparse.REMAINDER)
    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["ingest"] and len(raw) > 1 and raw[1] not in ("-h", "--help", "--"):
        # argparse's REMAINDER drops leading options (--workers 2): pass them untouched.
        raw = ["ingest", "--", *raw[1:]]
    args = parser.parse_args(raw)
    handlers = {
        "migrate": _migrate,
        "seed": _seed,
        "create-admin": _create_admin,
        "pki": _pki,
        "api": _api,
        "ingest": _ingest,
        "webhooks": _webhooks,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
