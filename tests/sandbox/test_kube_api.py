"""The Kubernetes API twin through the official Python client: verbs, apply, watch, selectors, errors."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

MANAGER = "kube-api-test"


def config_map(name: str, namespace: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict:
    metadata = {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def deployment(name: str, namespace: str, replicas: int = 1, image: str = "busybox:1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "main", "image": image, "ports": [{"containerPort": 8080}]}]
                },
            },
        },
    }


# -- server-side apply -----------------------------------------------------------------------------


def test_server_side_apply_creates_then_updates_and_is_idempotent(dynamic, namespace):
    config_maps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    manifest = config_map("settings", namespace, {"mode": "a"}, {"tier": "x"})

    created = config_maps.server_side_apply(body=manifest, namespace=namespace, field_manager=MANAGER)
    again = config_maps.server_side_apply(body=manifest, namespace=namespace, field_manager=MANAGER)
    assert again.metadata.resourceVersion == created.metadata.resourceVersion
    assert [entry.manager for entry in created.metadata.managedFields] == [MANAGER]
    assert created.metadata.managedFields[0].operation == "Apply"

    manifest["data"] = {"mode": "b"}  # "mode" changes; the label is no longer applied, so it goes
    manifest["metadata"]["labels"] = {}
    updated = config_maps.server_side_apply(body=manifest, namespace=namespace, field_manager=MANAGER)
    assert updated.data.mode == "b"
    assert not updated.to_dict()["metadata"].get("labels")
    assert int(updated.metadata.resourceVersion) > int(created.metadata.resourceVersion)
    assert updated.metadata.uid == created.metadata.uid


def test_apply_conflicts_with_another_manager_unless_forced(dynamic, namespace):
    config_maps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    config_maps.server_side_apply(
        body=config_map("shared", namespace, {"owner": "first"}), namespace=namespace, field_manager="first"
    )
    with pytest.raises(ConflictError) as raised:
        config_maps.server_side_apply(
            body=config_map("shared", namespace, {"owner": "second"}),
            namespace=namespace,
            field_manager="second",
        )
    assert 'conflict with \\"first\\"' in raised.value.body
    forced = config_maps.server_side_apply(
        body=config_map("shared", namespace, {"owner": "second"}),
        namespace=namespace,
        field_manager="second",
        force_conflicts=True,
    )
    assert forced.data.owner == "second"
    owners = {entry["manager"]: entry["fieldsV1"] for entry in forced.to_dict()["metadata"]["managedFields"]}
    assert "f:owner" in owners["second"]["f:data"]
    assert "first" not in owners  # it owned nothing else, so its entry is gone


def test_apply_without_field_manager_is_a_bad_request(api, namespace):
    with pytest.raises(ApiException) as raised:
        api.call_api(
            f"/api/v1/namespaces/{namespace}/configmaps/x",
            "PATCH",
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            body=config_map("x", namespace, {}),
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    assert raised.value.status == 400


# -- typed reads, create/replace/delete errors -----------------------------------------------------


def test_typed_create_get_list_and_errors(api, namespace):
    core = k8s.CoreV1Api(api)
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="typed"), data={"k": "v"})
    created = core.create_namespaced_config_map(namespace, body)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert core.read_namespaced_config_map("typed", namespace).data == {"k": "v"}
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["typed"]

    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(namespace, body)
    assert (exists.value.status, exists.value.reason) == (409, "Conflict")
    assert '"reason": "AlreadyExists"' in exists.value.body

    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", namespace)
    assert missing.value.status == 404
    assert 'configmaps \\"nope\\" not found' in missing.value.body


def test_replace_with_a_stale_resource_version_conflicts(api, namespace):
    core = k8s.CoreV1Api(api)
    first = core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cas"), data={"n": "1"})
    )
    first.data = {"n": "2"}
    second = core.replace_namespaced_config_map("cas", namespace, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"n": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as raised:
        core.replace_namespaced_config_map("cas", namespace, first)
    assert raised.value.status == 409
    assert "the object has been modified" in raised.value.body


def test_create_in_a_missing_namespace_or_with_a_bad_name_fails(api):
    core = k8s.CoreV1Api(api)
    with pytest.raises(ApiException) as no_namespace:
        core.create_namespaced_config_map(
            "does-not-exist", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="a"))
        )
    assert no_namespace.value.status == 404
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_config_map(
            "default", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="Bad_Name"))
        )
    assert bad_name.value.status == 422
    assert "RFC 1123" in bad_name.value.body


def test_secret_string_data_is_stored_base64_encoded(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="hf-token"), string_data={"token": "hf_abc"})
    )
    secret = core.read_namespaced_secret("hf-token", namespace)
    assert secret.string_data is None
    assert base64.b64decode(secret.data["token"]) == b"hf_abc"
    assert secret.type == "Opaque"


def test_services_get_a_stable_cluster_ip(api, namespace):
    core = k8s.CoreV1Api(api)
    service = core.create_namespaced_service(
        namespace,
        k8s.V1Service(
            metadata=k8s.V1ObjectMeta(name="epp"),
            spec=k8s.V1ServiceSpec(selector={"app": "epp"}, ports=[k8s.V1ServicePort(port=9002)]),
        ),
    )
    assert service.spec.cluster_ip.startswith("10.8.")
    patched = core.patch_namespaced_service("epp", namespace, {"metadata": {"labels": {"x": "y"}}})
    assert patched.spec.cluster_ip == service.spec.cluster_ip
    assert patched.spec.ports[0].target_port == 9002


def test_delete_returns_a_success_status(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="gone")))
    status = core.delete_namespaced_config_map("gone", namespace, body=k8s.V1DeleteOptions())
    assert status.status == "Success"
    assert status.details.name == "gone"
    with pytest.raises(ApiException) as raised:
        core.delete_namespaced_config_map("gone", namespace)
    assert raised.value.status == 404


# -- patches -----------------------------------------------------------------------------------


def test_strategic_merge_patch_merges_containers_by_name(api, namespace):
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("web", namespace))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "image": "busybox:2"},
                        {"name": "sidecar", "image": "envoy:1"},
                    ]
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("web", namespace, patch)
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["main"].image == "busybox:2"
    assert containers["main"].ports[0].container_port == 8080  # kept: merged, not replaced
    assert containers["sidecar"].image == "envoy:1"
    assert patched.metadata.generation == 2


def test_json_patch_and_merge_patch(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="p"), data={"a": "1", "b": "2"})
    )
    core.api_client.set_default_header("Content-Type", "application/json-patch+json")
    try:
        json_patched = core.patch_namespaced_config_map(
            "p",
            namespace,
            [{"op": "replace", "path": "/data/a", "value": "10"}, {"op": "remove", "path": "/data/b"}],
        )
    finally:
        core.api_client.default_headers.pop("Content-Type")
    assert json_patched.data == {"a": "10"}
    custom = k8s.CustomObjectsApi(core.api_client)  # CustomObjectsApi sends merge-patch+json
    merged = custom.patch_namespaced_custom_object(
        "", "v1", namespace, "configmaps", "p", {"data": {"a": None, "c": "3"}}
    )
    assert merged["data"] == {"c": "3"}


# -- status subresource ----------------------------------------------------------------------------


def test_status_subresource_separates_spec_and_status(api, namespace):
    apps = k8s.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("split", namespace, replicas=0))
    with_status = apps.patch_namespaced_deployment_status(
        "split", namespace, {"status": {"observedGeneration": 99}, "spec": {"replicas": 5}}
    )
    assert with_status.status.observed_generation == 99
    assert with_status.spec.replicas == 0  # a /status write changes only .status

    main = apps.patch_namespaced_deployment("split", namespace, {"status": {"observedGeneration": 7}})
    assert main.status.observed_generation != 7  # a main-resource write keeps .status


# -- selectors and watch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web,env!=prod", ["a"]),
        ("tier in (web, db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("env", ["b", "c"]),
        ("!env", ["a", "d"]),
    ],
)
def test_label_selectors(api, namespace, selector, expected):
    core = k8s.CoreV1Api(api)
    labels = {
        "a": {"tier": "web"},
        "b": {"tier": "web", "env": "prod"},
        "c": {"tier": "db", "env": "dev"},
        "d": {},
    }
    for name, item_labels in labels.items():
        core.create_namespaced_config_map(
            namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, labels=item_labels))
        )
    found = core.list_namespaced_config_map(namespace, label_selector=selector).items
    assert sorted(item.metadata.name for item in found) == expected


def test_field_selectors_and_list_metadata(api, namespace):
    core = k8s.CoreV1Api(api)
    for name in ("one", "two"):
        core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name)))
    listed = core.list_namespaced_config_map(namespace, field_selector="metadata.name=two")
    assert [item.metadata.name for item in listed.items] == ["two"]
    assert listed.metadata.resource_version.isdigit()
    other = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace!={namespace}").items
    assert all(item.metadata.namespace != namespace for item in other)
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(namespace, field_selector="metadata.name")
    assert raised.value.status == 400


def test_watch_streams_changes_and_closes_at_its_timeout(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="w1")))
    listed = core.list_namespaced_config_map(namespace)
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="w2")))
    core.delete_namespaced_config_map("w1", namespace)

    started = time.monotonic()
    events = [
        (event["type"], event["object"].metadata.name)
        for event in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    elapsed = time.monotonic() - started
    assert events == [("ADDED", "w2"), ("DELETED", "w1")]  # resumed after the listed version
    assert 0.9 <= elapsed < 5


def test_watch_without_a_version_starts_with_the_current_objects(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="now", labels={"w": "1"}))
    )
    core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="other")))
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, namespace, label_selector="w=1", timeout_seconds=1
    )
    assert [(e["type"], e["object"].metadata.name) for e in stream] == [("ADDED", "now")]


def test_a_watch_with_a_selector_sees_objects_enter_and_leave_it(api, namespace):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="mover", labels={"stage": "a"}))
    )
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"stage": "b"}}})
    core.patch_namespaced_config_map("mover", namespace, {"data": {"x": "1"}})
    core.patch_namespaced_config_map("mover", namespace, {"metadata": {"labels": {"stage": "a"}}})
    stream = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        label_selector="stage=b",
        resource_version=start,
        timeout_seconds=1,
    )
    assert [event["type"] for event in stream] == ["ADDED", "MODIFIED", "DELETED"]


# -- deletion cascades -------------------------------------------------------------------------------


def test_deleting_a_deployment_removes_its_replica_sets_and_pods(kube, api, namespace):
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment("cascade", namespace, replicas=2))
    kube.wait_for(
        lambda: len(kube.cluster.store.list("v1", "Pod", namespace)) == 2, what="two pods of the deployment"
    )
    apps.delete_namespaced_deployment("cascade", namespace, propagation_policy="Background")
    assert apps.list_namespaced_replica_set(namespace).items == []
    assert core.list_namespaced_pod(namespace).items == []


def test_deleting_a_namespace_removes_its_objects(kube, api):
    core = k8s.CoreV1Api(api)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map("doomed", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="inside")))
    core.delete_namespace("doomed")
    assert kube.run(kube.cluster.store.list, "v1", "ConfigMap", "doomed") == []
    with pytest.raises(ApiException):
        core.read_namespace("doomed")


# -- CRDs ------------------------------------------------------------------------------------------


def widget_crd(group: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def test_a_crd_adds_its_kind_to_discovery_and_becomes_established(kube, dynamic, namespace):
    group = f"{namespace}.example.com"
    with pytest.raises(ResourceNotFoundError):
        dynamic.resources.get(api_version=f"{group}/v1", kind="Widget")
    crds = dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.server_side_apply(body=widget_crd(group), field_manager=MANAGER)

    established = kube.wait_for(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (
                kube.cluster.store.get(
                    "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, f"widgets.{group}"
                )
                or {}
            )
            .get("status", {})
            .get("conditions", [])
        ),
        what="the CRD to be Established",
    )
    assert established
    crd = crds.get(name=f"widgets.{group}")
    assert crd.status.acceptedNames.kind == "Widget"

    dynamic.resources.invalidate_cache()
    widgets = dynamic.resources.get(api_version=f"{group}/v1", kind="Widget")
    assert widgets.namespaced and widgets.short_names == ["wd"]
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    created = widgets.server_side_apply(body=widget, namespace=namespace, field_manager=MANAGER)
    assert created.to_dict()["status"] == {}
    assert created.metadata.generation == 1

    status_written = widgets.status.patch(
        body={"metadata": {"name": "w"}, "status": {"phase": "Ready"}},
        namespace=namespace,
        content_type="application/merge-patch+json",
    )
    assert status_written.status.phase == "Ready" and status_written.metadata.generation == 1

    crds.delete(name=f"widgets.{group}")
    assert kube.run(kube.cluster.store.list, f"{group}/v1", "Widget") == []
    dynamic.resources.invalidate_cache()
    with pytest.raises(ResourceNotFoundError):
        dynamic.resources.get(api_version=f"{group}/v1", kind="Widget")


def test_gke_preinstalled_kinds_are_served(dynamic):
    for api_version, kind in [
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("networking.gke.io/v1", "HealthCheckPolicy"),
        ("networking.gke.io/v1", "GCPBackendPolicy"),
        ("networking.gke.io/v1", "GCPRoutingExtension"),
        ("inference.networking.k8s.io/v1", "InferencePool"),
    ]:
        assert dynamic.resources.get(api_version=api_version, kind=kind).namespaced
    assert not dynamic.resources.get(api_version="cloud.google.com/v1", kind="ComputeClass").namespaced
    classes = dynamic.resources.get(api_version="gateway.networking.k8s.io/v1", kind="GatewayClass").get()
    assert {"gke-l7-regional-external-managed", "gke-l7-rilb"} <= {c.metadata.name for c in classes.items}


def test_a_custom_resource_of_an_unknown_kind_is_not_found(dynamic, namespace):
    pools = dynamic.resources.get(api_version="inference.networking.k8s.io/v1", kind="InferencePool")
    with pytest.raises(NotFoundError):
        pools.get(name="absent", namespace=namespace)


# -- discovery and OpenAPI, as raw HTTP -----------------------------------------------------------


@pytest.fixture(scope="module")
def http(kube):
    with httpx.Client(
        base_url=kube.url,
        verify=str(kube.ca_file),
        headers={"Authorization": f"Bearer {kube.token}"},
        timeout=10,
    ) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/version/", "/api/", "/apis/", "/api/v1/", "/apis/apps/v1/", "/apis/apps/"]
)
def test_discovery_tolerates_trailing_slashes(http, path):
    response = http.get(path)
    assert response.status_code == 200, response.text
    assert response.json()


def test_legacy_discovery_lists_status_subresources(http):
    resources = {r["name"]: r for r in http.get("/apis/gateway.networking.k8s.io/v1").json()["resources"]}
    assert resources["gateways"]["namespaced"] and resources["gateways"]["kind"] == "Gateway"
    assert resources["gateways/status"]["verbs"] == ["get", "patch", "update"]
    assert not resources["gatewayclasses"]["namespaced"]


def test_aggregated_discovery_when_asked(http):
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    response = http.get("/apis", headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith("application/json;g=apidiscovery.k8s.io;v=v2")
    groups = {item["metadata"]["name"]: item for item in response.json()["items"]}
    pools = groups["inference.networking.k8s.io"]["versions"][0]["resources"][0]
    assert (pools["resource"], pools["scope"], pools["shortNames"]) == (
        "inferencepools",
        "Namespaced",
        ["infpool"],
    )
    assert http.get("/apis").json()["kind"] == "APIGroupList"  # plain JSON otherwise


def test_openapi_v3_declares_field_validation_on_patch(http):
    index = http.get("/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/apps/v1", "apis/gateway.networking.k8s.io/v1"} <= set(index)
    document = http.get(index["apis/apps/v1"]["serverRelativeURL"]).json()
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert http.get("/openapi/v2").status_code == 404


def test_unknown_resources_and_verbs_are_status_errors(http):
    missing = http.get("/apis/example.com/v1/widgets")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"
    not_allowed = http.put("/api/v1/namespaces/default/configmaps", json={})
    assert not_allowed.status_code == 405 and not_allowed.json()["reason"] == "MethodNotAllowed"
    wrong_kind = http.post(
        "/api/v1/namespaces/default/configmaps", json={"apiVersion": "v1", "kind": "Secret"}
    )
    assert wrong_kind.status_code == 400 and wrong_kind.json()["reason"] == "BadRequest"


def test_watch_from_an_expired_version_reports_410_gone(kube, http):
    kube.run(kube.cluster.store.compact, 2)
    response = http.get(
        "/api/v1/namespaces", params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"}
    )
    event = json.loads(response.text.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


def test_status_sent_on_create_is_ignored(http, namespace):
    created = http.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        json={**deployment("nostatus", namespace, replicas=0), "status": {"readyReplicas": 9}},
    )
    assert created.status_code == 201
    assert created.json()["status"] == {}


def test_tables_for_kubectl_get(http, namespace):
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "tabled"}})
    table = http.get(f"/api/v1/namespaces/{namespace}/configmaps", headers={"Accept": accept}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]
    assert table["rows"][0]["cells"][0] == "tabled"
    assert table["rows"][0]["object"]["metadata"]["name"] == "tabled"


def test_injected_faults_reach_kubernetes_clients_and_are_logged(sandbox, clean_faults, api, namespace):
    core = k8s.CoreV1Api(api)
    sandbox.faults_add(
        api="kube", method="GET", path=f"/namespaces/{namespace}/configmaps$", status=503, count=1
    )
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_config_map(namespace)
    assert raised.value.status == 503
    assert core.list_namespaced_config_map(namespace).items == []  # the fault fired once
    statuses = [
        e["status"] for e in sandbox.requests("kube") if e["path"].endswith(f"{namespace}/configmaps")
    ]
    assert statuses[-2:] == [503, 200]


def test_invalid_workloads_are_rejected_with_the_field_at_fault(dynamic, namespace):
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    mismatched = deployment("mismatch", namespace)
    mismatched["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as raised:
        deployments.server_side_apply(body=mismatched, namespace=namespace, field_manager=MANAGER)
    assert raised.value.status == 422
    assert "`selector` does not match template `labels`" in raised.value.body

    imageless = deployment("imageless", namespace)
    del imageless["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(ApiException) as missing_image:
        deployments.create(body=imageless, namespace=namespace)
    assert "spec.template.spec.containers[0].image: Required value" in missing_image.value.body
