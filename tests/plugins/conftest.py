"""Fixtures for the plugin component tests: an Airflow GCP connection to the sandbox, fresh projects.

Tests share one sandbox, so each test works in its own GCP project (or with uuid-suffixed names)
and leaves other tests' resources alone.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from sandbox.gcp.state import Project, project_number_for

GCP_CONN_ID = "google_cloud_default"
REGION = "us-central1"
SLOW_CLUSTER_PROVISIONING = 2.0


def unique(prefix: str) -> str:
    """A GCP-valid resource name, unique in the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _add_project(sandbox, project_id: str, services: tuple[str, ...]) -> None:
    project = Project(project_id, project_number_for(project_id))
    for service in services:
        project.enable(service)
    sandbox.gcp.projects[project_id] = project


@pytest.fixture
def slow_cluster_provisioning(sandbox) -> float:
    """Clusters created in the test stay PROVISIONING for seconds, not the "instant" profile's 0.3 s,
    so a test can observe that state even on a busy machine."""
    original = sandbox.sandbox.profile
    slower = dataclasses.replace(original, cluster_provisioning=SLOW_CLUSTER_PROVISIONING)
    sandbox.run(setattr, sandbox.sandbox, "profile", slower)
    yield SLOW_CLUSTER_PROVISIONING
    sandbox.run(setattr, sandbox.sandbox, "profile", original)


@pytest.fixture
def gcp_connection(sandbox, monkeypatch) -> str:
    """The sandbox's google_cloud_default connection, as Airflow reads it from the environment."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", sandbox.info["airflow_connections"]["google_cloud_default"]
    )
    return GCP_CONN_ID


@pytest.fixture
def new_project(sandbox, gcp_connection) -> str:
    """A project as GCP creates it: only the default services are enabled."""
    project_id = unique("proj")
    sandbox.run(_add_project, sandbox.sandbox, project_id, ())
    return project_id


@pytest.fixture
def project(sandbox, gcp_connection) -> str:
    """A project with the Compute Engine and Kubernetes Engine APIs already enabled."""
    project_id = unique("proj")
    services = ("compute.googleapis.com", "container.googleapis.com")
    sandbox.run(_add_project, sandbox.sandbox, project_id, services)
    return project_id


# --- Kubernetes side (helper D2): GKE clusters built through the sandbox's GCP APIs -------------

import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec  # noqa: E402
from gke_inference.hooks.gke import AutopilotClusterSpec, GKEClusterHook  # noqa: E402
from gke_inference.hooks.kubernetes import ClusterKubernetesHook  # noqa: E402
from gke_inference.ownership import GCP_LABELS, K8S_LABELS, NETWORK_DESCRIPTION  # noqa: E402

OLD_GKE_VERSION = "1.33.5-gke.1080000"
CLUSTER_READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class ClusterRef:
    """Where a test cluster lives; ``kwargs`` are the cluster arguments of our operators and hooks."""

    project_id: str
    location: str
    cluster_name: str
    network_name: str
    gcp_conn_id: str = GCP_CONN_ID

    @property
    def kwargs(self) -> dict[str, str]:
        return {
            "project_id": self.project_id,
            "location": self.location,
            "cluster_name": self.cluster_name,
            "gcp_conn_id": self.gcp_conn_id,
        }

    def hook(self) -> ClusterKubernetesHook:
        return ClusterKubernetesHook(**self.kwargs)


def build_cluster(sandbox, *, proxy_only_subnet: bool, version: str | None = None) -> ClusterRef:
    """A project with the tutorial's VPC and subnets and a RUNNING Autopilot cluster in it."""
    project_id = unique("kube")
    services = ("compute.googleapis.com", "container.googleapis.com")
    sandbox.run(_add_project, sandbox.sandbox, project_id, services)
    network = ComputeNetworkHook(gcp_conn_id=GCP_CONN_ID)
    network.ensure_network("inference-vpc", project_id, description=NETWORK_DESCRIPTION)
    node_subnet = SubnetworkSpec(
        "inference-subnet",
        REGION,
        "10.0.0.0/20",
        {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"},
    )
    network.ensure_subnetwork(node_subnet, "inference-vpc", project_id, description=NETWORK_DESCRIPTION)
    if proxy_only_subnet:
        proxy_subnet = SubnetworkSpec(
            "proxy-only-subnet", REGION, "10.129.0.0/23", purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE"
        )
        network.ensure_subnetwork(proxy_subnet, "inference-vpc", project_id, description=NETWORK_DESCRIPTION)
    gke = GKEClusterHook(location=REGION, gcp_conn_id=GCP_CONN_ID)
    spec = AutopilotClusterSpec(
        "inference-gateway-lab",
        "inference-vpc",
        "inference-subnet",
        "pods-range",
        "services-range",
        "RAPID",
        dict(GCP_LABELS),
    )
    cluster = spec.to_cluster()
    if version:
        cluster.initial_cluster_version = version
    gke.create_cluster(cluster, project_id)
    deadline = time.monotonic() + CLUSTER_READY_TIMEOUT
    while gke.get_cluster(spec.name, project_id).status.name != "RUNNING":
        assert time.monotonic() < deadline, "sandbox cluster did not become RUNNING"
        time.sleep(0.1)
    return ClusterRef(project_id, REGION, spec.name, "inference-vpc")


@pytest.fixture(scope="session")
def cluster_factory(sandbox, airflow_connections_env):
    """``cluster_factory(proxy_only_subnet=..., version=None)`` -> a new RUNNING cluster."""
    return lambda **shape: build_cluster(sandbox, **shape)


@pytest.fixture(scope="session")
def kube_cluster(sandbox, airflow_connections_env) -> ClusterRef:
    """A current-version cluster whose VPC has the proxy-only subnet (Gateways get programmed)."""
    return build_cluster(sandbox, proxy_only_subnet=True)


@pytest.fixture(scope="session")
def kube_cluster_without_proxy_subnet(sandbox, airflow_connections_env) -> ClusterRef:
    """A cluster whose VPC lacks the proxy-only subnet (tutorial 1.3 skipped)."""
    return build_cluster(sandbox, proxy_only_subnet=False)


@pytest.fixture(scope="session")
def old_kube_cluster(sandbox, airflow_connections_env) -> ClusterRef:
    """A cluster older than 1.34.0-gke.1626000: GKE does not serve the v1 InferencePool CRD there."""
    return build_cluster(sandbox, proxy_only_subnet=True, version=OLD_GKE_VERSION)


def create_namespace(hook: ClusterKubernetesHook, prefix: str = "ns") -> str:
    name = unique(prefix)
    hook.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": K8S_LABELS}}])
    return name


@pytest.fixture(scope="session")
def namespace_factory():
    """``namespace_factory(cluster_ref)`` -> a fresh namespace on that cluster."""
    return lambda cluster, prefix="ns": create_namespace(cluster.hook(), prefix)


@pytest.fixture
def namespace(kube_cluster) -> str:
    """A fresh namespace on ``kube_cluster``, so tests that share the cluster do not share objects."""
    return create_namespace(kube_cluster.hook())
