"""What the GCP API twins read from their sandbox (sandbox.app.Sandbox satisfies each of these).

Each API names only what it uses; tests/sandbox/test_twin_seams.py checks the real Sandbox against them.
"""

from __future__ import annotations

from typing import Any, Protocol

from sandbox.core.auth import TokenAuthority
from sandbox.core.certs import CertificateAuthority
from sandbox.core.faults import FaultHost, FaultTable
from sandbox.core.profiles import Profile
from sandbox.gcp.state import GcpState


class ApiHost(Protocol):
    """Service Usage: the projects' state, the timing profile, the fault behaviours."""

    gcp: GcpState
    profile: Profile
    faults: FaultTable


class ComputeHost(ApiHost, Protocol):
    service_account_email: str


class ContainerHost(ApiHost, Protocol):
    """The Container API also starts and stops each cluster's Kubernetes API and data plane."""

    gke_version: str
    ca: CertificateAuthority

    async def start_kube_cluster(self, *, project: str, location: str, name: str, **settings: Any) -> Any: ...

    async def stop_kube_cluster(self, key: str) -> None: ...

    async def notify_cluster_running(self, key: str) -> None: ...


class IamCredentialsHost(Protocol):
    """IAM Credentials (generateAccessToken): the token authority, and the projects whose service
    accounts may be impersonated."""

    tokens: TokenAuthority
    gcp: GcpState


class GcpHost(FaultHost, ComputeHost, ContainerHost, IamCredentialsHost, Protocol):
    """The shared GCP port: every API above, its fault middleware, and the token endpoint's authority."""
