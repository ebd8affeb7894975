"""One sandbox GKE cluster's control plane: object store, HTTPS API server and controllers."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from sandbox.core.certs import CertificateAuthority
from sandbox.core.faults import FaultHost, fault_middleware
from sandbox.kube.admission import ServiceAddresses
from sandbox.kube.builtin import (
    BUILTIN_TYPES,
    PREEXISTING_NAMESPACES,
    preinstalled_crds,
    preinstalled_gateway_classes,
)
from sandbox.kube.controllers import all_controllers
from sandbox.kube.controllers.base import Controller, ControllerHost
from sandbox.kube.controllers.crds import established_status
from sandbox.kube.gke_version import GkeVersion
from sandbox.kube.resources import ResourceRegistry
from sandbox.kube.server import KubeApiServer, TokenHost
from sandbox.kube.status import KubeApiError
from sandbox.kube.store import ObjectStore

BIND_HOST = "127.0.0.1"


def region_of(location: str) -> str:
    """us-central1-a -> us-central1; a region stays as it is."""
    parts = location.split("-")
    if len(parts) == 3 and len(parts[2]) == 1 and parts[2].isalpha():
        return "-".join(parts[:2])
    return location


class ClusterHost(FaultHost, ControllerHost, TokenHost, Protocol):
    """What a cluster reads from its sandbox: what its API server and controllers need, and the CA
    that signs the API server's certificate."""

    ca: CertificateAuthority


class KubeCluster:
    """Composes one cluster: its store, API server (sandbox.kube.server) and controllers
    (sandbox.kube.controllers), which see it only through the ServedCluster and ControlledCluster
    protocols."""

    def __init__(
        self,
        sandbox: ClusterHost,
        *,
        project: str,
        location: str,
        name: str,
        version: str = "1.34.1-gke.1000000",
        network: str = "inference-vpc",
        subnetwork: str = "inference-subnet",
    ) -> None:
        GkeVersion.parse(version)  # refuse a malformed version early
        self.sandbox = sandbox
        self.project = project
        self.location = location
        self.region = region_of(location)
        self.name = name
        self.version = version
        # The Container API may hand over names or resource paths; the controllers need names.
        self.network = network.rsplit("/", 1)[-1]
        self.subnetwork = subnetwork.rsplit("/", 1)[-1]
        self.registry = ResourceRegistry(BUILTIN_TYPES)
        self.store = ObjectStore(describe=self._describe)
        self.store.observe(self._serve_crds)
        self.service_addresses = ServiceAddresses()
        self.dataplane: Any = None  # set by whoever wires the data plane (sandbox.app)
        self._api = KubeApiServer(self)
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._controllers: list[Controller] = []
        self._seed()

    @property
    def endpoint(self) -> str:
        if self._port is None:
            raise RuntimeError(f"cluster {self.name} is not started")
        return f"{BIND_HOST}:{self._port}"

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}"

    @property
    def ca_pem(self) -> bytes:
        return self.sandbox.ca.ca_pem

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = self._api.build_app([fault_middleware("kube", self.sandbox)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((BIND_HOST, 0))
        self._port = listener.getsockname()[1]
        await web.SockSite(self._runner, listener, ssl_context=self._tls_context()).start()
        self._controllers = all_controllers(self)
        for controller in self._controllers:
            controller.start()

    async def stop(self) -> None:
        for controller in self._controllers:
            await controller.stop()
        self._controllers = []
        self._api.close_watches()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    def _tls_context(self) -> ssl.SSLContext:
        cert_pem, key_pem = self.sandbox.ca.issue(BIND_HOST)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            cert_file, key_file = Path(directory, "tls.crt"), Path(directory, "tls.key")
            cert_file.write_bytes(cert_pem)
            key_file.write_bytes(key_pem)
            key_file.chmod(0o600)
            context.load_cert_chain(cert_file, key_file)
        return context

    def _describe(self, api_version: str, kind: str) -> tuple[str, str]:
        resource_type = self.registry.by_kind(api_version, kind)
        group = api_version.rpartition("/")[0]
        return (resource_type.plural if resource_type else f"{kind.lower()}s"), group

    def _serve_crds(self, event_type: str, obj: dict[str, Any]) -> None:
        """Keep discovery in step with CRDs, synchronously, so a CR can follow its CRD at once."""
        if (obj["apiVersion"], obj["kind"]) != ("apiextensions.k8s.io/v1", "CustomResourceDefinition"):
            return
        if event_type == "DELETED":
            for withdrawn in self.registry.withdraw_crd(obj["metadata"]["name"]):
                for instance in self.store.list(withdrawn.api_version, withdrawn.kind):
                    with contextlib.suppress(KubeApiError):  # gone already, with its owner
                        self.store.delete(
                            withdrawn.api_version,
                            withdrawn.kind,
                            instance["metadata"].get("namespace"),
                            instance["metadata"]["name"],
                        )
        else:
            self.registry.serve_crd(obj)

    def _seed(self) -> None:
        for namespace in PREEXISTING_NAMESPACES:
            self.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": {"kubernetes.io/metadata.name": namespace}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }
            )
        for crd in preinstalled_crds(self.version):
            created = self.store.create(crd)
            self.store.update_status(
                created["apiVersion"],
                created["kind"],
                None,
                created["metadata"]["name"],
                established_status(created),
            )
        for gateway_class in preinstalled_gateway_classes():
            self.store.create({**gateway_class, "status": {}})
