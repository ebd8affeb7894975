"""The sandbox: every simulated API in one asyncio process, bound to loopback only."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.admin import build_admin_app
from sandbox.core.addresses import AddressPool
from sandbox.core.auth import ACCESS_TOKEN_LIFETIME, ServiceAccountKey, TokenAuthority
from sandbox.core.certs import CertificateAuthority
from sandbox.core.faults import FaultTable, RequestLog
from sandbox.core.profiles import get_profile
from sandbox.core.waits import WaitLog
from sandbox.gcp.operations import OperationRunner
from sandbox.gcp.server import build_gcp_app
from sandbox.gcp.state import GcpState
from sandbox.hub.server import HubState, build_hub_app

logger = logging.getLogger(__name__)

DEFAULT_GKE_VERSION = "1.34.1-gke.1829001"
# Long enough for a demo session (kubectl through the kubeconfig); tokens minted through /token
# last the usual hour, or the token_lifetime given.
_INFO_TOKEN_LIFETIME = 7 * 24 * 3600


class Sandbox:
    """Start with `await start()` on a running loop; everything then runs on that loop."""

    def __init__(
        self,
        profile: str = "instant",
        project_id: str = "sandbox-project",
        gke_version: str = DEFAULT_GKE_VERSION,
        host: str = "127.0.0.1",
        state_dir: str | os.PathLike | None = None,
        token_lifetime: float = ACCESS_TOKEN_LIFETIME,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the sandbox binds loopback addresses only, not {host}")
        self.profile = get_profile(profile)
        self.project_id = project_id
        self.gke_version = gke_version
        self.host = host
        self.faults = FaultTable()
        self.log = RequestLog()
        self.waits = WaitLog()
        self.service_account = ServiceAccountKey.generate(project_id)
        self.tokens = TokenAuthority(self.service_account, lifetime=token_lifetime)
        self.ca = CertificateAuthority()
        self.addresses = AddressPool()
        self.gcp = GcpState([project_id])
        self.clusters: dict[str, Any] = {}
        self.hf_token = "hf_" + secrets.token_urlsafe(24)
        # A token the Hub knows whose user was not granted the gated models (Llama 3.1).
        self.hf_token_without_access = "hf_" + secrets.token_urlsafe(24)
        self.hub = HubState({self.hf_token: True, self.hf_token_without_access: False})
        self.info: dict = {}
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._owns_state_dir = state_dir is None
        self._operations = OperationRunner(self.waits)
        self._runners: list[web.AppRunner] = []
        self._cluster_running_callbacks: list[Callable[[str], Awaitable[None] | None]] = []

    @property
    def service_account_email(self) -> str:
        return self.service_account.client_email

    @property
    def kubeconfig_dir(self) -> Path:
        return self._require_state_dir() / "kubeconfig"

    async def start(self) -> None:
        if self._runners:
            raise RuntimeError("the sandbox is already started")
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="gke-sandbox-"))
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_dir.mkdir(exist_ok=True)
        api_port = await self._serve(build_gcp_app(self, self._operations))
        admin_port = await self._serve(build_admin_app(self))
        hub_port = await self._serve(build_hub_app(self))
        api_endpoint = f"http://{self.host}:{api_port}"
        key_path = self._write_private_file(
            "service-account.json", json.dumps(self.service_account.key_file_json(f"{api_endpoint}/token"))
        )
        self.info = self._build_info(
            api_endpoint, f"http://{self.host}:{admin_port}", key_path, f"http://{self.host}:{hub_port}"
        )

    async def stop(self) -> None:
        await self._operations.stop()
        for key in list(self.clusters):
            await self.stop_kube_cluster(key)
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()
        self.addresses.close()
        if self._owns_state_dir and self._state_dir is not None:
            shutil.rmtree(self._state_dir, ignore_errors=True)

    # --- clusters (called by the Container API)

    async def start_kube_cluster(self, *, project: str, location: str, name: str, **settings: Any) -> Any:
        """Start a cluster's Kubernetes API and data plane; returns the KubeCluster."""
        # Imported here: the Kubernetes side is only needed once a cluster exists.
        from sandbox.dataplane import DataPlane
        from sandbox.kube.cluster import KubeCluster

        cluster = KubeCluster(self, project=project, location=location, name=name, **settings)
        await cluster.start()
        try:
            cluster.dataplane = DataPlane(self, cluster)
            await cluster.dataplane.start()
        except BaseException:
            await cluster.stop()
            raise
        self.clusters[f"projects/{project}/locations/{location}/clusters/{name}"] = cluster
        return cluster

    async def stop_kube_cluster(self, key: str) -> None:
        cluster = self.clusters.pop(key, None)
        if cluster is None:
            return
        (self.kubeconfig_dir / f"{cluster.name}.yaml").unlink(missing_ok=True)
        if cluster.dataplane is not None:
            await cluster.dataplane.stop()
        await cluster.stop()

    def on_cluster_running(self, callback: Callable[[str], Awaitable[None] | None]) -> None:
        self._cluster_running_callbacks.append(callback)

    async def notify_cluster_running(self, key: str) -> None:
        cluster = self.clusters[key]
        self._write_private_file(
            f"kubeconfig/{cluster.name}.yaml", json.dumps(self.kubeconfig(key), indent=2)
        )
        for callback in self._cluster_running_callbacks:
            result = callback(key)
            if result is not None:
                await result

    def kubeconfig(self, key: str) -> dict:
        """A kubeconfig for a running cluster: its CA and a token minted by the sandbox."""
        cluster = self.clusters[key]
        context = f"sandbox_{self.project_id}_{cluster.location}_{cluster.name}"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": f"https://{cluster.endpoint}",
                        "certificate-authority-data": base64.b64encode(self.ca.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": context, "user": {"token": self.info["access_token"]}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }

    # --- internals

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        site = web.SockSite(runner, sock)
        await site.start()
        return sock.getsockname()[1]

    def _build_info(self, api_endpoint: str, admin_url: str, key_path: Path, hf_endpoint: str) -> dict:
        google_connection = {
            "conn_type": "google_cloud_platform",
            "extra": {"key_path": str(key_path), "project": self.project_id, "api_endpoint": api_endpoint},
        }
        hf_connection = {
            "conn_type": "generic",
            "password": self.hf_token,
            "extra": {"endpoint": hf_endpoint},
        }
        return {
            "api_endpoint": api_endpoint,
            "project_id": self.project_id,
            "key_path": str(key_path),
            "access_token": self.tokens.mint(lifetime=_INFO_TOKEN_LIFETIME),
            "admin_url": admin_url,
            "hf_endpoint": hf_endpoint,
            "hf_token_without_access": self.hf_token_without_access,
            "kubeconfig_dir": str(self.kubeconfig_dir),
            "profile": self.profile.name,
            "airflow_connections": {
                "google_cloud_default": json.dumps(google_connection),
                "huggingface_default": json.dumps(hf_connection),
            },
        }

    def _write_private_file(self, relative: str, content: str) -> Path:
        """Write atomically with mode 0600: these files hold keys and tokens."""
        path = self._require_state_dir() / relative
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(temporary, path)
        return path

    def _require_state_dir(self) -> Path:
        if self._state_dir is None:
            raise RuntimeError("the sandbox is not started")
        return self._state_dir
