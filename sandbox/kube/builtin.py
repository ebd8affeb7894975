"""The builtin kinds every cluster serves and the CRDs GKE preinstalls."""

from __future__ import annotations

from typing import Any

from sandbox.kube.gke_version import serves_builtin_inference_pool
from sandbox.kube.resources import ResourceType

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", False, short_names=("ns",), has_status=True),
    ResourceType("", "v1", "Secret", "secrets", True),
    ResourceType("", "v1", "ConfigMap", "configmaps", True, short_names=("cm",)),
    ResourceType(
        "", "v1", "Service", "services", True, short_names=("svc",), has_status=True, categories=("all",)
    ),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=("sa",)),
    ResourceType("", "v1", "Pod", "pods", True, short_names=("po",), has_status=True, categories=("all",)),
    ResourceType("", "v1", "Event", "events", True, short_names=("ev",)),
    ResourceType(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        short_names=("deploy",),
        has_status=True,
        has_scale=True,
        categories=("all",),
    ),
    ResourceType(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        True,
        short_names=("rs",),
        has_status=True,
        has_scale=True,
        categories=("all",),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd", "crds"),
        has_status=True,
    ),
)

PREEXISTING_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

GKE_GATEWAY_CONTROLLER = "networking.gke.io/gateway"
PREINSTALLED_GATEWAY_CLASSES = ("gke-l7-regional-external-managed", "gke-l7-rilb")


def crd_manifest(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short_names: tuple[str, ...] = (),
    status: bool = True,
    categories: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A minimal CustomResourceDefinition (schema preserves unknown fields)."""
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
    }
    if short_names:
        names["shortNames"] = list(short_names)
    if categories:
        names["categories"] = list(categories)
    served_version: dict[str, Any] = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    }
    if status:
        served_version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [served_version],
        },
    }


def preinstalled_crds(cluster_version: str) -> list[dict[str, Any]]:
    gateway = "gateway.networking.k8s.io"
    gke_networking = "networking.gke.io"
    crds = [
        crd_manifest(gateway, "v1", "GatewayClass", "gatewayclasses", namespaced=False, short_names=("gc",)),
        crd_manifest(gateway, "v1", "Gateway", "gateways", short_names=("gtw",)),
        crd_manifest(gateway, "v1", "HTTPRoute", "httproutes"),
        crd_manifest(gateway, "v1", "GRPCRoute", "grpcroutes"),
        crd_manifest(
            gateway, "v1beta1", "ReferenceGrant", "referencegrants", short_names=("refgrant",), status=False
        ),
        crd_manifest(gke_networking, "v1", "HealthCheckPolicy", "healthcheckpolicies"),
        crd_manifest(gke_networking, "v1", "GCPBackendPolicy", "gcpbackendpolicies"),
        crd_manifest(gke_networking, "v1", "GCPGatewayPolicy", "gcpgatewaypolicies"),
        crd_manifest(gke_networking, "v1", "GCPRoutingExtension", "gcproutingextensions"),
        crd_manifest(gke_networking, "v1", "GCPTrafficExtension", "gcptrafficextensions"),
        crd_manifest("cloud.google.com", "v1", "ComputeClass", "computeclasses", namespaced=False),
    ]
    return crds


def gke_managed_crds(cluster_version: str) -> list[dict[str, Any]]:
    """The CRDs GKE installs itself from some version on; they arrive after the cluster is RUNNING
    (see sandbox.kube.controllers.crds.CrdController)."""
    if not serves_builtin_inference_pool(cluster_version):
        return []
    return [
        crd_manifest(
            "inference.networking.k8s.io", "v1", "InferencePool", "inferencepools", short_names=("infpool",)
        )
    ]


def preinstalled_gateway_classes() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": GKE_GATEWAY_CONTROLLER},
        }
        for name in PREINSTALLED_GATEWAY_CLASSES
    ]
