"""Tutorial section 1: enable the APIs, create the VPC, the node subnet and the proxy-only subnet.

Hooks are imported inside ``execute``: the Google client libraries take seconds to import, and the
DAG processor imports this module on every parse of the DAG file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gke_inference import results
from gke_inference.arguments import check_when_built, flag, seconds
from gke_inference.hooks._errors import InvalidInputError
from gke_inference.links import ApisConsoleLink, NetworkConsoleLink, SubnetworkConsoleLink
from gke_inference.operators._gcp_base import GcpOperator
from gke_inference.results import created_or_found, gcp_ref

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

            timeout = seconds(self.operation_timeout, "operation_timeout")
            hook = ServiceUsageHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.enable_services(self.services, project, timeout=timeout)
        self.log.info(
            "Enabled: %s; already enabled: %s", result["enabled"] or "none", result["already_enabled"]
        )
        return results.result(
            created=[gcp_ref("Api", name) for name in result["enabled"]],
            unchanged=[gcp_ref("Api", name) for name in result["already_enabled"]],
            project_id=project,
            **result,
        )


class EnsureNetworkOperator(GcpOperator):
    """The VPC (custom subnet mode, regional routing); created unless it exists.

    With ``use_existing`` (the use_existing_network param) the VPC must already exist and is never created.
    XCom: ``{"project_id", "name", "self_link", "created", "owned"}``.
    """

    tutorial_step = "1.3"
    action = "Creating the VPC"
    operator_extra_links = (NetworkConsoleLink(),)
    template_fields: Sequence[str] = (*GcpOperator.template_fields, "network_name", "use_existing")

    def __init__(self, *, network_name: str, use_existing: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network_name = network_name
        check_when_built(flag, use_existing, "use_existing")
        self.use_existing = use_existing

    def execute(self, context: Any) -> dict:
        with self.failing_fast_on_terminal_errors():
            from gke_inference.hooks.compute_network import ComputeNetworkHook

            use_existing = flag(self.use_existing, "use_existing")
            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.ensure_network(
                self.network_name,
                project,
                description=self.ownership.network_description,
                use_existing=use_existing,
            )
        self.log.info("Network %s %s", result["name"], "created" if result["created"] else "already exists")
        created = result.pop("created")
        return created_or_found(created, gcp_ref("Network", result["name"]), project_id=project, **result)


class EnsureSubnetworkOperator(GcpOperator):
    """A subnetwork of the VPC: the node subnet with its secondary ranges, or the proxy-only subnet.

    For the proxy-only subnet pass ``purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE"``; any ACTIVE
    proxy-only subnet already in the region satisfies it. With ``use_existing`` a node subnet
    must already exist (it is never created); a missing proxy-only subnet is still created, as the
    tutorial asks. ``secondary_ranges`` is a list of ``(range name, CIDR)`` pairs (either may be an
    XComArg), or a mapping of range name -> CIDR.
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
        secondary_ranges: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        purpose: str | None = None,
        role: str | None = None,
        use_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.subnetwork_name = subnetwork_name
        self.network_name = network_name
        self.region = region
        self.ip_cidr_range = ip_cidr_range
        # A list of pairs, because Airflow renders the values of a templated dict but not its keys.
        self.secondary_ranges = _as_pairs(secondary_ranges)
        self.purpose = purpose
        self.role = role
        check_when_built(flag, use_existing, "use_existing")
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
            use_existing = flag(self.use_existing, "use_existing") and not spec.is_proxy_only
            hook = ComputeNetworkHook(**self.hook_kwargs())
            project = hook.resolve_project_id(self.project_id)
            result = hook.ensure_subnetwork(
                spec,
                self.network_name,
                project,
                description=self.ownership.network_description,
                use_existing=use_existing,
            )
        self.log.info(
            "Subnetwork %s %s", result["name"], "created" if result["created"] else "already exists"
        )
        created, ref = result.pop("created"), gcp_ref("Subnetwork", self.region, result["name"])
        return created_or_found(created, ref, project_id=project, **result)


def _as_pairs(ranges: Sequence[tuple[str, str]] | Mapping[str, str] | None) -> list[tuple[Any, Any]]:
    if isinstance(ranges, Mapping):
        return list(ranges.items())
    pairs = [tuple(pair) for pair in ranges or ()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"secondary_ranges must be (range name, CIDR) pairs, got {ranges!r}")
    return pairs


def _secondary_ranges(pairs: Sequence[tuple[Any, Any]]) -> dict[str, str]:
    for name, cidr in pairs:
        if not isinstance(name, str) or not isinstance(cidr, str) or not name or not cidr:
            raise InvalidInputError(f"Each secondary range needs a name and a CIDR, got {(name, cidr)!r}")
    return dict(pairs)
