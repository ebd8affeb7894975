"""Discovery documents (legacy and aggregated v2) and the minimal OpenAPI v3 kubectl needs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sandbox.kube.resources import ResourceRegistry, ResourceType

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
STATUS_VERBS = ["get", "patch", "update"]


def wants_aggregated(accept: str) -> bool:
    return any(
        "as=APIGroupDiscoveryList" in part and "v=v2" in part and "v=v2beta1" not in part
        for part in accept.split(",")
    )


def version_info(cluster_version: str) -> dict[str, Any]:
    major, minor = cluster_version.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"v{cluster_version.lstrip('v')}",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def _api_resource(resource_type: ResourceType) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "name": resource_type.plural,
        "singularName": resource_type.singular_name,
        "namespaced": resource_type.namespaced,
        "kind": resource_type.kind,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        resource["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        resource["categories"] = list(resource_type.categories)
    return resource


def resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = []
    for resource_type in types:
        resources.append(_api_resource(resource_type))
        if resource_type.has_status:
            resources.append(
                {
                    "name": f"{resource_type.plural}/status",
                    "singularName": "",
                    "namespaced": resource_type.namespaced,
                    "kind": resource_type.kind,
                    "verbs": STATUS_VERBS,
                }
            )
        if (resource_type.api_version, resource_type.kind) == ("v1", "Pod"):
            resources.append(
                {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}
            )
        if resource_type.has_scale:
            resources.append(
                {
                    "name": f"{resource_type.plural}/scale",
                    "singularName": "",
                    "namespaced": resource_type.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": STATUS_VERBS,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def core_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group(registry: ResourceRegistry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    groups = [_api_group(g, versions) for g, versions in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def aggregated(registry: ResourceRegistry, core: bool) -> dict[str, Any]:
    """`apidiscovery.k8s.io/v2` for /api (core=True) or /apis: every resource in one answer."""
    items = []
    for group, versions in registry.group_versions().items():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group, "creationTimestamp": None},
                "versions": [
                    {
                        "version": version,
                        "resources": [
                            _aggregated_resource(t) for t in registry.in_group_version(group, version)
                        ],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def _aggregated_resource(resource_type: ResourceType) -> dict[str, Any]:
    response_kind = {
        "group": resource_type.group,
        "version": resource_type.version,
        "kind": resource_type.kind,
    }
    resource: dict[str, Any] = {
        "resource": resource_type.plural,
        "responseKind": response_kind,
        "scope": "Namespaced" if resource_type.namespaced else "Cluster",
        "singularResource": resource_type.singular_name,
        "verbs": list(resource_type.verbs),
    }
    if resource_type.short_names:
        resource["shortNames"] = list(resource_type.short_names)
    if resource_type.categories:
        resource["categories"] = list(resource_type.categories)
    subresources = []
    if resource_type.has_status:
        subresources.append({"subresource": "status", "responseKind": response_kind, "verbs": STATUS_VERBS})
    if resource_type.has_scale:
        scale_kind = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
        subresources.append({"subresource": "scale", "responseKind": scale_kind, "verbs": STATUS_VERBS})
    if subresources:
        resource["subresources"] = subresources
    return resource


# -- OpenAPI v3 ----------------------------------------------------------------------------------
# kubectl's default --validate=strict only checks that the PATCH operation of the object's
# group-version-kind accepts `fieldValidation`; then it lets the server validate. No schemas needed.


def _openapi_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(resource_type: ResourceType) -> str:
    prefix = f"/{_openapi_key(resource_type.group, resource_type.version)}"
    if resource_type.namespaced:
        return f"{prefix}/namespaces/{{namespace}}/{resource_type.plural}/{{name}}"
    return f"{prefix}/{resource_type.plural}/{{name}}"


def openapi_document(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths = {}
    for resource_type in types:
        paths[_item_path(resource_type)] = {
            "patch": {
                "operationId": f"patch{resource_type.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {
                    "group": resource_type.group,
                    "version": resource_type.version,
                    "kind": resource_type.kind,
                },
                "parameters": [
                    {
                        "name": "fieldValidation",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {
                        "name": "fieldManager",
                        "in": "query",
                        "schema": {"type": "string", "uniqueItems": True},
                    },
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}},
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_index(registry: ResourceRegistry) -> dict[str, Any]:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            document = openapi_document(registry, group, version)
            digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16].upper()
            key = _openapi_key(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
