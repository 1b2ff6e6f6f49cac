"""`python -m kickstand.cloud <subcommand>`: migrate, seed, create-admin, api, ingest, webhooks."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence


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
        "api": _api,
        "ingest": _ingest,
        "webhooks": _webhooks,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
