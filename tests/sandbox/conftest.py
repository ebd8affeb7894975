"""Fixtures for the Kubernetes API tests: a KubeCluster on the shared sandbox, and clients for it."""

from __future__ import annotations

import base64
import itertools
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient

_names = itertools.count()


class ClusterHandle:
    """A started KubeCluster plus what a client needs to reach it."""

    def __init__(self, sandbox, cluster, token: str, workdir: Path) -> None:  # noqa: ANN001
        self.sandbox = sandbox
        self.cluster = cluster
        self.token = token
        self.ca_file = workdir / "ca.crt"
        self.ca_file.write_bytes(sandbox.sandbox.ca.ca_pem)
        self.kubeconfig = workdir / "kubeconfig.yaml"
        self.kubeconfig.write_text(yaml.safe_dump(self._kubeconfig()))
        self.kubeconfig.chmod(0o600)

    @property
    def url(self) -> str:
        return f"https://{self.cluster.endpoint}"

    def _kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sandbox",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_file.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": "sandbox", "user": {"token": self.token}}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}],
            "current-context": "sandbox",
        }

    def api_client(self, token: str | None = None) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca_file)
        bearer = self.token if token is None else token
        if bearer:
            # The value carries its scheme: client 36 applies a prefix only under the "BearerToken" key.
            configuration.api_key = {"authorization": f"Bearer {bearer}"}
        return k8s.ApiClient(configuration)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a function on the sandbox loop (the store is not thread-safe)."""
        return self.sandbox.run(fn, *args, **kwargs)

    def wait_for(self, probe: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Poll `probe` (run on the sandbox loop) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.run(probe)
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_cluster(sandbox, **settings: Any):  # noqa: ANN001
    """Start a KubeCluster on the shared sandbox, in a VPC of its own.

    The VPC name is unique so that the proxy-only subnets these tests add to the sandbox's GCP
    state never meet the networks other test modules create through the Compute API.
    """
    from sandbox.kube.cluster import KubeCluster

    # Random, not a counter: pytest loads this file as `conftest` and test modules import it as
    # `tests.sandbox.conftest`, two copies with a counter each, so counted names repeated.
    suffix = secrets.token_hex(3)
    settings.setdefault("name", f"kube-test-{suffix}")
    settings.setdefault("location", "us-central1")
    settings.setdefault("network", f"kube-test-vpc-{suffix}")

    async def start():
        cluster = KubeCluster(sandbox.sandbox, project=sandbox.info["project_id"], **settings)
        await cluster.start()
        return cluster

    return sandbox.call(start)


@pytest.fixture(scope="module")
def kube(sandbox) -> Iterator[ClusterHandle]:  # noqa: ANN001
    """A cluster for one test module (its own store, so modules do not see each other's objects)."""
    cluster = start_cluster(sandbox)
    token = sandbox.run(sandbox.sandbox.tokens.mint)
    with tempfile.TemporaryDirectory(prefix="kube-test-") as workdir:
        try:
            yield ClusterHandle(sandbox, cluster, token, Path(workdir))
        finally:
            sandbox.call(cluster.stop)


@pytest.fixture(scope="module")
def api(kube: ClusterHandle) -> Iterator[k8s.ApiClient]:
    with kube.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="module")
def dynamic(api: k8s.ApiClient) -> DynamicClient:
    return DynamicClient(api)


@pytest.fixture
def namespace(kube: ClusterHandle, api: k8s.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (with everything in it)."""
    name = f"test-{next(_names)}"
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def add_proxy_only_subnet(handle: ClusterHandle) -> None:
    """Give the cluster's VPC an ACTIVE proxy-only subnet in its region (as Compute would store it)."""
    cluster = handle.cluster
    project, region, network = cluster.project, cluster.region, cluster.network
    base = f"https://www.googleapis.com/compute/v1/projects/{project}"
    subnet = {
        "name": f"proxy-{network}",
        "purpose": "REGIONAL_MANAGED_PROXY",
        "role": "ACTIVE",
        "ipCidrRange": "10.129.0.0/23",
        "region": f"{base}/regions/{region}",
        "network": f"{base}/global/networks/{network}",
    }
    handle.run(handle.sandbox.sandbox.gcp.subnetworks.__setitem__, (project, region, subnet["name"]), subnet)
