"""Command line: `python -m sandbox serve --info-file PATH [--profile demo]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from sandbox.app import DEFAULT_GKE_VERSION, Sandbox
from sandbox.core.auth import ACCESS_TOKEN_LIFETIME
from sandbox.core.profiles import PROFILES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sandbox until SIGINT or SIGTERM")
    serve.add_argument(
        "--info-file", required=True, type=Path, help="where to write the info JSON once ready"
    )
    serve.add_argument("--profile", choices=sorted(PROFILES), default="instant")
    serve.add_argument("--project-id", default="sandbox-project")
    serve.add_argument("--gke-version", default=DEFAULT_GKE_VERSION)
    serve.add_argument("--host", default="127.0.0.1", help="a loopback address to bind")
    serve.add_argument(
        "--token-lifetime",
        type=float,
        default=ACCESS_TOKEN_LIFETIME,
        metavar="SECONDS",
        help="how long access tokens are accepted (Google's: 3600; shorter to test token refresh)",
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        help="where the key file and kubeconfigs go (default: a temporary directory removed on exit)",
    )
    return parser


def _write_atomically(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(temporary, path)


async def serve(args: argparse.Namespace) -> None:
    sandbox = Sandbox(
        profile=args.profile,
        project_id=args.project_id,
        gke_version=args.gke_version,
        host=args.host,
        state_dir=args.state_dir,
        token_lifetime=args.token_lifetime,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await sandbox.start()
    try:
        _write_atomically(args.info_file, json.dumps(sandbox.info, indent=2))
        logging.getLogger("sandbox").info(
            "sandbox ready: API %s, admin %s, info %s",
            sandbox.info["api_endpoint"],
            sandbox.info["admin_url"],
            args.info_file,
        )
        await stop.wait()
    finally:
        await sandbox.stop()
        args.info_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args))
    except ValueError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
