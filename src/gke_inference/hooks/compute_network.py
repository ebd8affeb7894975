"""Compute hook for VPC networks and subnetworks, including proxy-only subnets (tutorial 1.3).

Inserts and deletes return a plain ``compute_v1.Operation`` (``*_unary``) that we wait on with
operations clients built on the same endpoint: the generated ``ExtendedOperation.result()`` polls
Google's default endpoint whatever the client was pointed at.
"""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import NamedTuple

from google.api_core import exceptions as api_exceptions

from gke_inference.hooks._base import EndpointAwareGoogleHook, compute_v1_on_demand
from gke_inference.hooks._errors import (
    MissingResourceError,
    OperationFailedError,
    ResourceMismatchError,
)
from gke_inference.hooks._operations import DEFAULT_OPERATION_TIMEOUT, poll_until
from gke_inference.hooks._retry import DEFAULT_RETRY

compute_v1 = compute_v1_on_demand()

PROXY_ONLY_PURPOSE = "REGIONAL_MANAGED_PROXY"
ACTIVE_ROLE = "ACTIVE"
# operations.wait blocks on the server for up to two minutes before answering.
OPERATION_WAIT_SERVER_HOLD = 120.0
# Operation error codes that say "not now" rather than "never" (Compute reports them with HTTP 403).
# QUOTA_EXCEEDED is not among them: a project quota does not grow by waiting.
RETRYABLE_OPERATION_ERROR_CODES = frozenset(
    {"RATE_LIMIT_EXCEEDED", "RESOURCE_OPERATION_RATE_EXCEEDED", "ZONE_RESOURCE_POOL_EXHAUSTED"}
)


class ResourceInUseError(RuntimeError):
    """A delete was refused because another resource still uses this one; it may clear soon."""


class SubnetworkSpec(NamedTuple):
    """A subnetwork as the tutorial creates it: a node subnet or the proxy-only subnet."""

    name: str
    region: str
    ip_cidr_range: str
    secondary_ranges: dict[str, str] = {}
    purpose: str | None = None
    role: str | None = None

    @property
    def is_proxy_only(self) -> bool:
        return self.purpose == PROXY_ONLY_PURPOSE

    def to_subnetwork(self, network_self_link: str, description: str) -> compute_v1.Subnetwork:
        subnetwork = compute_v1.Subnetwork(
            name=self.name,
            network=network_self_link,
            region=self.region,
            ip_cidr_range=self.ip_cidr_range,
            description=description,
            secondary_ip_ranges=[
                compute_v1.SubnetworkSecondaryRange(range_name=name, ip_cidr_range=cidr)
                for name, cidr in self.secondary_ranges.items()
            ],
        )
        if self.purpose:
            subnetwork.purpose = self.purpose
        if self.role:
            subnetwork.role = self.role
        return subnetwork

    def mismatches(self, existing: compute_v1.Subnetwork, *, ranges_only_by_name: bool = False) -> list[str]:
        """How an existing subnetwork differs from this spec in what the DAG relies on.

        With ``ranges_only_by_name`` (a subnet the user brought) only the presence of the named
        secondary ranges matters, not the CIDRs.
        """
        problems = []
        existing_ranges = {r.range_name: r.ip_cidr_range for r in existing.secondary_ip_ranges}
        if not ranges_only_by_name:
            if existing.ip_cidr_range != self.ip_cidr_range:
                problems.append(f"its range is {existing.ip_cidr_range}, not {self.ip_cidr_range}")
            if (existing.purpose or "PRIVATE") != (self.purpose or "PRIVATE"):
                problems.append(
                    f"its purpose is {existing.purpose or 'PRIVATE'}, not {self.purpose or 'PRIVATE'}"
                )
        for name, cidr in self.secondary_ranges.items():
            if name not in existing_ranges:
                problems.append(f"it has no secondary range {name!r}")
            elif not ranges_only_by_name and existing_ranges[name] != cidr:
                problems.append(f"its secondary range {name!r} is {existing_ranges[name]}, not {cidr}")
        return problems


def network_resource(name: str, description: str) -> compute_v1.Network:
    """The VPC as the tutorial creates it: custom subnet mode, regional dynamic routing."""
    return compute_v1.Network(
        name=name,
        auto_create_subnetworks=False,
        routing_config=compute_v1.NetworkRoutingConfig(routing_mode="REGIONAL"),
        description=description,
    )


def _last_segment(resource: str) -> str:
    return resource.rstrip("/").rsplit("/", 1)[-1]


def _is_active_proxy_only(subnetwork: compute_v1.Subnetwork) -> bool:
    return subnetwork.purpose == PROXY_ONLY_PURPOSE and subnetwork.role == ACTIVE_ROLE


class ComputeNetworkHook(EndpointAwareGoogleHook):
    """Get, create, list and delete VPC networks and subnetworks."""

    @cached_property
    def networks(self) -> compute_v1.NetworksClient:
        return self.named_client(compute_v1.NetworksClient(**self.client_kwargs()))

    @cached_property
    def subnetworks(self) -> compute_v1.SubnetworksClient:
        return self.named_client(compute_v1.SubnetworksClient(**self.client_kwargs()))

    @cached_property
    def global_operations(self) -> compute_v1.GlobalOperationsClient:
        return self.named_client(compute_v1.GlobalOperationsClient(**self.client_kwargs()))

    @cached_property
    def region_operations(self) -> compute_v1.RegionOperationsClient:
        return self.named_client(compute_v1.RegionOperationsClient(**self.client_kwargs()))

    @cached_property
    def zone_operations(self) -> compute_v1.ZoneOperationsClient:
        return self.named_client(compute_v1.ZoneOperationsClient(**self.client_kwargs()))

    # --- networks

    def get_network(self, name: str, project_id: str | None = None) -> compute_v1.Network:
        """The network; raises ``NotFound`` when it does not exist."""
        return self.networks.get(
            project=self.resolve_project_id(project_id),
            network=name,
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )

    def find_network(self, name: str, project_id: str | None = None) -> compute_v1.Network | None:
        try:
            return self.get_network(name, project_id)
        except api_exceptions.NotFound:
            return None

    def create_network(
        self,
        name: str,
        project_id: str | None = None,
        *,
        description: str,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> compute_v1.Network:
        """Create a custom-subnet-mode VPC with regional dynamic routing and wait for it."""
        project = self.resolve_project_id(project_id)
        network = network_resource(name, description)
        operation = self.networks.insert_unary(
            request=compute_v1.InsertNetworkRequest(
                project=project, network_resource=network, request_id=str(uuid.uuid4())
            ),
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        self.wait_for_operation(operation, project, timeout=timeout)
        return self.get_network(name, project)

    def delete_network(
        self, name: str, project_id: str | None = None, *, timeout: float = DEFAULT_OPERATION_TIMEOUT
    ) -> bool:
        """Delete and wait; ``False`` when it was already gone."""
        project = self.resolve_project_id(project_id)
        request = compute_v1.DeleteNetworkRequest(project=project, network=name, request_id=str(uuid.uuid4()))
        operation = self._delete(self.networks, request, f"network {name!r}")
        if operation is None:
            return False
        self.wait_for_operation(operation, project, timeout=timeout)
        return True

    # --- subnetworks

    def get_subnetwork(self, name: str, region: str, project_id: str | None = None) -> compute_v1.Subnetwork:
        """The subnetwork; raises ``NotFound`` when it does not exist."""
        return self.subnetworks.get(
            project=self.resolve_project_id(project_id),
            region=region,
            subnetwork=name,
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )

    def find_subnetwork(
        self, name: str, region: str, project_id: str | None = None
    ) -> compute_v1.Subnetwork | None:
        try:
            return self.get_subnetwork(name, region, project_id)
        except api_exceptions.NotFound:
            return None

    def list_subnetworks(
        self, network_name: str, region: str, project_id: str | None = None
    ) -> list[compute_v1.Subnetwork]:
        """The subnetworks of one network in one region."""
        pager = self.subnetworks.list(
            project=self.resolve_project_id(project_id),
            region=region,
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        return [s for s in pager if _last_segment(s.network) == network_name]

    def create_subnetwork(
        self,
        spec: SubnetworkSpec,
        network: compute_v1.Network,
        project_id: str | None = None,
        *,
        description: str,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> compute_v1.Subnetwork:
        project = self.resolve_project_id(project_id)
        operation = self.subnetworks.insert_unary(
            request=compute_v1.InsertSubnetworkRequest(
                project=project,
                region=spec.region,
                subnetwork_resource=spec.to_subnetwork(network.self_link, description),
                request_id=str(uuid.uuid4()),
            ),
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        self.wait_for_operation(operation, project, region=spec.region, timeout=timeout)
        return self.get_subnetwork(spec.name, spec.region, project)

    def delete_subnetwork(
        self,
        name: str,
        region: str,
        project_id: str | None = None,
        *,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> bool:
        """Delete and wait; ``False`` when it was already gone."""
        project = self.resolve_project_id(project_id)
        request = compute_v1.DeleteSubnetworkRequest(
            project=project, region=region, subnetwork=name, request_id=str(uuid.uuid4())
        )
        operation = self._delete(self.subnetworks, request, f"subnetwork {name!r}")
        if operation is None:
            return False
        self.wait_for_operation(operation, project, region=region, timeout=timeout)
        return True

    def _delete(self, client, request, what: str):
        """Send a delete; None when the resource was already gone, ResourceInUseError while in use."""
        try:
            return client.delete_unary(request=request, retry=DEFAULT_RETRY, timeout=self.request_timeout)
        except api_exceptions.NotFound:
            return None
        except api_exceptions.BadRequest as exc:
            if _is_in_use(exc):
                raise ResourceInUseError(f"Cannot delete {what} yet: {exc.message}") from exc
            raise

    # --- ensure (get, create what is missing, check what exists)

    def ensure_network(
        self, name: str, project_id: str | None = None, *, description: str, use_existing: bool = False
    ) -> dict:
        """The VPC, created if missing unless ``use_existing`` (then it must already exist).

        Returns ``{"name", "self_link", "created", "owned"}``.
        """
        project = self.resolve_project_id(project_id)
        network = self.find_network(name, project)
        created = False
        if network is None:
            if use_existing:
                raise MissingResourceError(
                    f"Network {name!r} does not exist in project {project}; with use_existing_network "
                    "the DAG uses a VPC you created and never creates one"
                )
            try:
                network = self.create_network(name, project, description=description)
                created = True
            except api_exceptions.Conflict:
                self.log.info("Network %s was created concurrently; reading it back", name)
                network = self.get_network(name, project)
        elif not use_existing and network.auto_create_subnetworks:
            raise ResourceMismatchError(
                f"Network {name!r} already exists in auto subnet mode; the tutorial needs a custom-mode VPC"
            )
        return {
            "name": network.name,
            "self_link": network.self_link,
            "created": created,
            "owned": network.description == description,
        }

    def ensure_subnetwork(
        self,
        spec: SubnetworkSpec,
        network_name: str,
        project_id: str | None = None,
        *,
        description: str,
        use_existing: bool = False,
    ) -> dict:
        """The subnetwork, created if missing unless ``use_existing`` (then it must exist).

        A proxy-only spec is satisfied by any ACTIVE proxy-only subnet of the network in the
        region, whatever its name: GCP allows only one. Returns ``{"name", "region", "self_link",
        "created", "owned", "ip_cidr_range", "purpose"}``.
        """
        project = self.resolve_project_id(project_id)
        network = self.find_network(network_name, project)
        if network is None:
            raise MissingResourceError(f"Network {network_name!r} does not exist in project {project}")
        subnetwork = self.existing_subnetwork(spec, network_name, project)
        created = False
        if subnetwork is None:
            if use_existing:
                raise MissingResourceError(
                    f"Subnetwork {spec.name!r} does not exist in {spec.region}; with use_existing_network "
                    "the DAG uses the subnet you created and never creates it"
                )
            try:
                subnetwork = self.create_subnetwork(spec, network, project, description=description)
                created = True
            except api_exceptions.Conflict:
                self.log.info("Subnetwork %s was created concurrently; reading it back", spec.name)
                subnetwork = self.get_subnetwork(spec.name, spec.region, project)
        self._check_subnetwork(spec, subnetwork, network_name, loose=use_existing or spec.is_proxy_only)
        return {
            "name": subnetwork.name,
            "region": spec.region,
            "self_link": subnetwork.self_link,
            "created": created,
            "owned": subnetwork.description == description,
            "ip_cidr_range": subnetwork.ip_cidr_range,
            "purpose": subnetwork.purpose or "PRIVATE",
        }

    def existing_subnetwork(
        self, spec: SubnetworkSpec, network_name: str, project: str
    ) -> compute_v1.Subnetwork | None:
        if spec.is_proxy_only:
            active = [
                s
                for s in self.list_subnetworks(network_name, spec.region, project)
                if _is_active_proxy_only(s)
            ]
            if active:
                if active[0].name != spec.name:
                    self.log.info("Network %s already has proxy-only subnet %s", network_name, active[0].name)
                return active[0]
        return self.find_subnetwork(spec.name, spec.region, project)

    @staticmethod
    def _check_subnetwork(
        spec: SubnetworkSpec, subnetwork: compute_v1.Subnetwork, network_name: str, *, loose: bool
    ) -> None:
        problems = []
        if _last_segment(subnetwork.network) != network_name:
            problems.append(
                f"it belongs to network {_last_segment(subnetwork.network)!r}, not {network_name!r}"
            )
        if spec.is_proxy_only:
            if not _is_active_proxy_only(subnetwork):
                problems.append(f"it is not an ACTIVE {PROXY_ONLY_PURPOSE} subnet")
        else:
            problems.extend(spec.mismatches(subnetwork, ranges_only_by_name=loose))
        if problems:
            raise ResourceMismatchError(
                f"Subnetwork {subnetwork.name!r} in {spec.region} exists but " + "; ".join(problems)
            )

    # --- operations

    def wait_for_operation(
        self,
        operation: compute_v1.Operation,
        project_id: str | None = None,
        *,
        region: str | None = None,
        zone: str | None = None,
        timeout: float = DEFAULT_OPERATION_TIMEOUT,
    ) -> compute_v1.Operation:
        """Wait for a global (or, with ``region``/``zone``, regional/zonal) operation; raise if it failed."""
        project = self.resolve_project_id(project_id)
        wait_timeout = self.request_timeout + OPERATION_WAIT_SERVER_HOLD
        if zone:

            def fetch() -> compute_v1.Operation:
                return self.zone_operations.wait(
                    project=project,
                    zone=zone,
                    operation=operation.name,
                    retry=DEFAULT_RETRY,
                    timeout=wait_timeout,
                )
        elif region:

            def fetch() -> compute_v1.Operation:
                return self.region_operations.wait(
                    project=project,
                    region=region,
                    operation=operation.name,
                    retry=DEFAULT_RETRY,
                    timeout=wait_timeout,
                )
        else:

            def fetch() -> compute_v1.Operation:
                return self.global_operations.wait(
                    project=project,
                    operation=operation.name,
                    retry=DEFAULT_RETRY,
                    timeout=wait_timeout,
                )

        description = (
            f"Compute operation {operation.name} ({operation.operation_type} {operation.target_link})"
        )
        done = poll_until(
            fetch,
            lambda op: op.status == compute_v1.Operation.Status.DONE,
            description=description,
            timeout=timeout,
            poll_interval=1.0,
        )
        if done.error.errors:
            message = "; ".join(f"{e.code}: {e.message}" for e in done.error.errors)
            raise OperationFailedError(description, message, http_status=_operation_http_status(done))
        return done


def _operation_http_status(operation: compute_v1.Operation) -> int | None:
    """The HTTP status an operation failed with, 429 when its error codes say a retry may succeed."""
    if any(e.code in RETRYABLE_OPERATION_ERROR_CODES for e in operation.error.errors):
        return 429
    return operation.http_error_status_code or None


def _is_in_use(exc: api_exceptions.BadRequest) -> bool:
    """Compute refuses to delete a resource still in use with a 400; that usually clears soon."""
    return any(
        isinstance(e, dict) and e.get("reason") == "resourceInUseByAnotherResource" for e in exc.errors
    )
