"""What exists in the simulated GCP: projects and their enabled services, VPCs, subnetworks, clusters."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sandbox.gcp.errors import GcpError, service_disabled

COMPUTE_SERVICE = "compute.googleapis.com"
CONTAINER_SERVICE = "container.googleapis.com"
SERVICE_TITLES = {
    COMPUTE_SERVICE: "Compute Engine API",
    CONTAINER_SERVICE: "Kubernetes Engine API",
    "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "networkservices.googleapis.com": "Network Services API",
    "servicenetworking.googleapis.com": "Service Networking API",
    "monitoring.googleapis.com": "Cloud Monitoring API",
    "logging.googleapis.com": "Cloud Logging API",
    "serviceusage.googleapis.com": "Service Usage API",
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
}
# Enabling a service enables what it depends on, as on GCP (GKE needs Compute Engine).
SERVICE_DEPENDENCIES = {
    CONTAINER_SERVICE: (COMPUTE_SERVICE, "artifactregistry.googleapis.com"),
}
# Compute collections of the load balancers GKE's Gateway controller builds (sandbox.gcp.loadbalancers).
LB_COLLECTIONS = (
    "forwardingRules",
    "targetHttpProxies",
    "urlMaps",
    "backendServices",
    "healthChecks",
    "addresses",
    "networkEndpointGroups",
    "firewalls",
)
# Every new GCP project starts with these enabled.
DEFAULT_ENABLED_SERVICES = frozenset({"serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com"})


def project_number_for(project_id: str) -> str:
    digest = hashlib.sha256(project_id.encode()).hexdigest()
    return str(100_000_000_000 + int(digest[:12], 16) % 900_000_000_000)


@dataclass
class Project:
    project_id: str
    number: str
    enabled_services: set[str] = field(default_factory=lambda: set(DEFAULT_ENABLED_SERVICES))

    def enable(self, service: str) -> None:
        self.enabled_services.add(service)
        for dependency in SERVICE_DEPENDENCIES.get(service, ()):
            self.enable(dependency)

    def require_enabled(self, service: str) -> None:
        if service not in self.enabled_services:
            title = SERVICE_TITLES.get(service, service)
            raise service_disabled(service, title, self.number)


class GcpState:
    """Resources are stored in their API JSON shape, keyed by their path parts."""

    def __init__(self, project_ids: list[str]) -> None:
        self.projects = {pid: Project(pid, project_number_for(pid)) for pid in project_ids}
        self.networks: dict[tuple[str, str], dict] = {}
        self.subnetworks: dict[tuple[str, str, str], dict] = {}
        self.clusters: dict[tuple[str, str, str], dict] = {}
        # collection -> (project, scope, name) -> resource; scope is "global", "regions/R" or "zones/Z".
        self.load_balancing: dict[str, dict[tuple[str, str, str], dict]] = {c: {} for c in LB_COLLECTIONS}

    def project(self, project: str) -> Project:
        """The project by id or number; 403 as on GCP for a project the caller cannot see."""
        for candidate in self.projects.values():
            if project in (candidate.project_id, candidate.number):
                return candidate
        raise GcpError(
            403,
            f"Permission denied on resource project {project} (or it may not exist). The sandbox "
            f"serves only the projects {sorted(self.projects)}.",
            reason="forbidden",
        )

    def subnetworks_of(self, project: str, network_name: str) -> list[dict]:
        return [
            subnet
            for (subnet_project, _, _), subnet in self.subnetworks.items()
            if subnet_project == project and subnet["network"].rsplit("/", 1)[-1] == network_name
        ]

    def proxy_only_subnet_active(self, project: str, region: str, network_name: str) -> bool:
        """Whether an ACTIVE REGIONAL_MANAGED_PROXY subnet exists for this VPC in this region."""
        return any(
            subnet.get("purpose") == "REGIONAL_MANAGED_PROXY"
            and subnet.get("role") == "ACTIVE"
            and subnet["region"].rsplit("/", 1)[-1] == region
            for subnet in self.subnetworks_of(project, network_name)
        )

    def lb_resources(self, project: str):
        """(collection, resource) for every load-balancer resource of the project."""
        for collection, resources in self.load_balancing.items():
            for (resource_project, _, _), resource in resources.items():
                if resource_project == project:
                    yield collection, resource

    def snapshot(self) -> dict:
        """Everything, for the admin endpoint."""
        return {
            "projects": {
                pid: {"number": p.number, "enabledServices": sorted(p.enabled_services)}
                for pid, p in self.projects.items()
            },
            "networks": list(self.networks.values()),
            "subnetworks": list(self.subnetworks.values()),
            "clusters": list(self.clusters.values()),
            "loadBalancing": {c: list(r.values()) for c, r in self.load_balancing.items()},
        }
