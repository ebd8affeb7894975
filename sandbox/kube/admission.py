"""What the API server does to an object before storing it: validation and per-kind defaults."""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

from sandbox.kube.resources import ResourceType
from sandbox.kube.status import invalid

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# ClusterIPs come from the tutorial's services range (10.8.0.0/20); .1 is the kubernetes Service.
_SERVICE_RANGE = ipaddress.IPv4Network("10.8.0.0/20")


def validate(resource_type: ResourceType, obj: dict[str, Any]) -> None:
    metadata = obj.get("metadata") or {}
    # With only generateName, the store appends 5 characters; check the name it would produce.
    name = metadata.get("name") or (metadata.get("generateName", "") + "xxxxx")
    group = resource_type.group
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise invalid(
            resource_type.plural,
            name,
            group,
            f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        )
    for key, value in (metadata.get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise invalid(
                resource_type.plural,
                name,
                group,
                f"metadata.labels: Invalid value: {value!r} (label {key!r})",
            )
    if resource_type.kind == "Secret":
        for field in ("data", "stringData"):
            if not isinstance(obj.get(field) or {}, dict):
                raise invalid(resource_type.plural, name, group, f"{field}: must be a map of strings")
    problem = _KIND_CHECKS.get((resource_type.api_version, resource_type.kind), lambda _: "")(obj)
    if problem:
        raise invalid(resource_type.plural, name, group, problem)


def _pod_spec_problem(spec: Any, where: str) -> str:
    containers = (spec or {}).get("containers") if isinstance(spec, dict) else None
    if not containers:
        return f"{where}.containers: Required value"
    for index, container in enumerate(containers):
        for field in ("name", "image"):
            if not (container or {}).get(field):
                return f"{where}.containers[{index}].{field}: Required value"
    return ""


def _workload_problem(obj: dict[str, Any]) -> str:
    """Deployments and ReplicaSets: a selector that matches the pod template's labels."""
    spec = obj.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels")
    if not match_labels and not (spec.get("selector") or {}).get("matchExpressions"):
        return "spec.selector: Required value"
    template = spec.get("template") or {}
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if any(template_labels.get(key) != value for key, value in (match_labels or {}).items()):
        return (
            f"spec.template.metadata.labels: Invalid value: {template_labels!r}: "
            "`selector` does not match template `labels`"
        )
    return _pod_spec_problem(template.get("spec"), "spec.template.spec")


def _service_problem(obj: dict[str, Any]) -> str:
    for index, port in enumerate((obj.get("spec") or {}).get("ports") or []):
        if not isinstance(port.get("port"), int):
            return f"spec.ports[{index}].port: Required value"
    return ""


_KIND_CHECKS = {
    ("v1", "Pod"): lambda obj: _pod_spec_problem(obj.get("spec"), "spec"),
    ("apps/v1", "Deployment"): _workload_problem,
    ("apps/v1", "ReplicaSet"): _workload_problem,
    ("v1", "Service"): _service_problem,
}


class ServiceAddresses:
    """Hands out ClusterIPs for Services, one cluster's worth."""

    def __init__(self) -> None:
        self._hosts = _SERVICE_RANGE.hosts()
        next(self._hosts)  # .1 belongs to the default `kubernetes` Service

    def allocate(self) -> str:
        try:
            return str(next(self._hosts))
        except StopIteration:
            raise RuntimeError("the Service ClusterIP range is exhausted") from None


def apply_defaults(
    resource_type: ResourceType,
    obj: dict[str, Any],
    previous: dict[str, Any] | None,
    service_addresses: ServiceAddresses,
) -> None:
    """Fill server-side defaults in place (`previous` is the stored object on updates)."""
    if resource_type.has_status and previous is None:
        obj["status"] = {}  # status belongs to controllers: a create through the API cannot set it
    defaulter = _DEFAULTERS.get((resource_type.api_version, resource_type.kind))
    if defaulter is not None:
        defaulter(obj, previous, service_addresses)


def _secret(obj: dict[str, Any], previous: dict[str, Any] | None, _: ServiceAddresses) -> None:
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {}) if string_data or "data" in obj else obj.get("data")
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    obj.setdefault("type", "Opaque")


def _service(obj: dict[str, Any], previous: dict[str, Any] | None, addresses: ServiceAddresses) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    previous_ip = ((previous or {}).get("spec") or {}).get("clusterIP")
    if previous_ip:
        spec["clusterIP"] = previous_ip  # immutable once assigned
    elif not spec.get("clusterIP"):
        spec["clusterIP"] = addresses.allocate()
    spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if not obj.get("status"):
        obj["status"] = {"loadBalancer": {}}


def _namespace(obj: dict[str, Any], previous: dict[str, Any] | None, _: ServiceAddresses) -> None:
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj["status"] = {"phase": "Active"}


def _pod(obj: dict[str, Any], previous: dict[str, Any] | None, _: ServiceAddresses) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    if previous is None:
        obj["status"] = {"phase": "Pending", "qosClass": "Burstable"}


def _deployment(obj: dict[str, Any], previous: dict[str, Any] | None, _: ServiceAddresses) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    )


def _replica_set(obj: dict[str, Any], previous: dict[str, Any] | None, _: ServiceAddresses) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)


_DEFAULTERS = {
    ("v1", "Secret"): _secret,
    ("v1", "Service"): _service,
    ("v1", "Namespace"): _namespace,
    ("v1", "Pod"): _pod,
    ("apps/v1", "Deployment"): _deployment,
    ("apps/v1", "ReplicaSet"): _replica_set,
}
