"""Tutorial section 1: enable the APIs, create the VPC, the node subnet and the proxy-only subnet.

Hooks are imported inside ``execute``: the Google client libraries take seconds to import, and the
DAG processor imports this module on every parse of the DAG file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gke_inference.coerce import as_bool, as_seconds
from gke_inference.hooks._errors import InvalidInputError
from gke_inference.links import ApisConsoleLink, NetworkConsoleLink, SubnetworkConsoleLink
from gke_inference.operators._gcp_base import GcpOperator
from gke_inference.ownership import NETWORK_DESCRIPTION

if TYPE_CHECKING:
    from gke_inference.hooks.compute_network import SubnetworkSpec

# `gcloud services enable ...` in tutorial 1.2.
TUTORIAL_SERVICES = (
    "compute.googleapis.com",
    "container.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "networkservices.googleapis.com",
    "servicenetworking.googleapis.com",
    "monitoring.googleapis.com",
    "logging.googleapis.com",
)


class EnableApisOperator(GcpOperator):
    """Enable the Google APIs the tutorial needs; those already enabled are left alone.

    XCom: ``{"project_id", "enabled": [newly enabled], "already_enabled": [...]}``.
    """

    tutorial_step = "1.2"
    action = "Enabling the Google APIs"
    operator_extra_links = (ApisConsoleLink(),)
    template_fields: Sequence[str] = (*GcpOperator.template_fields, "services")

    def __init__(
        self, *, services: Iterable[str] = TUTORIAL_SERVICES, operation_timeout: float = 600, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.services = list(services)
        self.operation_timeout = operation_timeout

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.service_usage import ServiceUsageHook

            timeout = as_seconds(self.operation_timeout, "operation_timeout")
            hook = ServiceUsageHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.enable_services(self.services, project, timeout=timeout)
        self.log.info(
            "Enabled: %s; already enabled: %s", result["enabled"] or "none", result["already_enabled"]
        )
        return {"project_id": project, **result}


class EnsureNetworkOperator(GcpOperator):
    """The VPC (custom subnet mode, regional routing); created unless it exists.

    With ``use_existing`` (the use_existing_network param) the VPC must already exist and is never created.
    XCom: ``{"project_id", "name", "self_link", "created", "owned"}``.
    """

    tutorial_step = "1.3"
    action = "Creating the VPC"
    operator_extra_links = (NetworkConsoleLink(),)
    template_fields: Sequence[str] = (*GcpOperator.template_fields, "network_name", "use_existing")

    def __init__(self, *, network_name: str, use_existing: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network_name = network_name
        self.use_existing = use_existing

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.compute_network import ComputeNetworkHook

            use_existing = as_bool(self.use_existing, "use_existing")
            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.ensure_network(
                self.network_name, project, description=NETWORK_DESCRIPTION, use_existing=use_existing
            )
        self.log.info("Network %s %s", result["name"], "created" if result["created"] else "already exists")
        return {"project_id": project, **result}


class EnsureSubnetworkOperator(GcpOperator):
    """A subnetwork of the VPC: the node subnet with its secondary ranges, or the proxy-only subnet.

    For the proxy-only subnet pass ``purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE"``; any ACTIVE
    proxy-only subnet already in the region satisfies it. With ``use_existing`` a node subnet
    must already exist (it is never created); a missing proxy-only subnet is still created, as the
    tutorial asks. ``secondary_ranges`` maps range name -> CIDR (both may be templates) or is a list
    of ``{"range_name", "ip_cidr_range"}``.
    XCom: ``{"project_id", "name", "region", "self_link", "created", "owned", "ip_cidr_range", "purpose"}``.
    """

    tutorial_step = "1.3"
    action = "Creating the subnetwork"
    operator_extra_links = (SubnetworkConsoleLink(),)
    template_fields: Sequence[str] = (
        *GcpOperator.template_fields,
        "subnetwork_name",
        "network_name",
        "region",
        "ip_cidr_range",
        "secondary_ranges",
        "use_existing",
    )

    def __init__(
        self,
        *,
        subnetwork_name: str,
        network_name: str,
        region: str,
        ip_cidr_range: str,
        secondary_ranges: Sequence[Mapping[str, str]] | Mapping[str, str] | None = None,
        purpose: str | None = None,
        role: str | None = None,
        use_existing: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.subnetwork_name = subnetwork_name
        self.network_name = network_name
        self.region = region
        self.ip_cidr_range = ip_cidr_range
        # A list of pairs, because Airflow renders the values of a templated dict but not its keys.
        self.secondary_ranges = _as_range_list(secondary_ranges)
        self.purpose = purpose
        self.role = role
        self.use_existing = use_existing

    def spec(self) -> SubnetworkSpec:
        from gke_inference.hooks.compute_network import ACTIVE_ROLE, PROXY_ONLY_PURPOSE, SubnetworkSpec

        if self.purpose == PROXY_ONLY_PURPOSE and self.secondary_ranges:
            raise InvalidInputError("A proxy-only subnet takes no secondary ranges")
        return SubnetworkSpec(
            name=self.subnetwork_name,
            region=self.region,
            ip_cidr_range=self.ip_cidr_range,
            secondary_ranges=_secondary_ranges(self.secondary_ranges),
            purpose=self.purpose,
            role=self.role or (ACTIVE_ROLE if self.purpose == PROXY_ONLY_PURPOSE else None),
        )

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.compute_network import ComputeNetworkHook

            spec = self.spec()
            use_existing = as_bool(self.use_existing, "use_existing") and not spec.is_proxy_only
            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.ensure_subnetwork(
                spec, self.network_name, project, description=NETWORK_DESCRIPTION, use_existing=use_existing
            )
        self.log.info(
            "Subnetwork %s %s", result["name"], "created" if result["created"] else "already exists"
        )
        return {"project_id": project, **result}


def _as_range_list(ranges: Sequence[Mapping[str, str]] | Mapping[str, str] | None) -> list[dict[str, str]]:
    if not ranges:
        return []
    if isinstance(ranges, Mapping):
        return [{"range_name": name, "ip_cidr_range": cidr} for name, cidr in ranges.items()]
    return [dict(entry) if isinstance(entry, Mapping) else entry for entry in ranges]


def _secondary_ranges(ranges: Sequence[Mapping[str, str]]) -> dict[str, str]:
    result = {}
    for entry in ranges:
        if not isinstance(entry, Mapping) or not entry.get("range_name") or not entry.get("ip_cidr_range"):
            raise InvalidInputError(f"Each secondary range needs range_name and ip_cidr_range, got {entry!r}")
        result[str(entry["range_name"])] = str(entry["ip_cidr_range"])
    return result
