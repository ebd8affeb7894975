"""The Kubernetes twin's pure parts: selectors, patches, field ownership, versions, the store."""

from __future__ import annotations

import pytest

from sandbox.kube.apply import leaf_paths, server_side_apply
from sandbox.kube.builtin import BUILTIN_TYPES
from sandbox.kube.cluster import region_of
from sandbox.kube.discovery import wants_aggregated
from sandbox.kube.gke_version import GkeVersion, serves_builtin_inference_pool
from sandbox.kube.patches import json_patch, merge_patch, strategic_merge_patch
from sandbox.kube.selectors import labels_match, parse_field_selector, parse_label_selector
from sandbox.kube.status import KubeApiError
from sandbox.kube.store import ObjectStore
from sandbox.kube.watch import WatchFilter


def labelled(**labels: str) -> dict:
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("app=vllm", {"app": "vllm"}, True),
        ("app==vllm", {"app": "epp"}, False),
        ("app!=vllm", {}, True),
        ("app in (vllm,epp),tier", {"app": "epp", "tier": "x"}, True),
        ("app notin (vllm, epp)", {"app": "epp"}, False),
        ("!canary", {"canary": "1"}, False),
        ("example.com/role", {"example.com/role": ""}, True),
    ],
)
def test_label_selector_semantics(selector, labels, matches):
    assert labels_match(parse_label_selector(selector), labelled(**labels)) is matches


def test_malformed_selectors_are_bad_requests():
    with pytest.raises(KubeApiError) as label_error:
        parse_label_selector("app=vllm,=x")
    assert label_error.value.code == 400
    with pytest.raises(KubeApiError):
        parse_field_selector("status.phase")


def test_field_selector_on_nested_fields():
    running = parse_field_selector("status.phase=Running,metadata.name!=a")
    assert running[0].matches({"status": {"phase": "Running"}})
    assert not running[1].matches({"metadata": {"name": "a"}})


def test_json_patch_operations_and_failures():
    doc = {"a": [1, 2], "b": {"c": 1}}
    patched = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "test", "path": "/d", "value": 1},
            {"op": "copy", "from": "/a/0", "path": "/e"},
        ],
    )
    assert patched == {"a": [1, 2, 3], "b": {}, "d": 1, "e": 1}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # the input is left alone
    with pytest.raises(KubeApiError) as missing:
        json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert missing.value.code == 400
    with pytest.raises(KubeApiError) as failed_test:
        json_patch(doc, [{"op": "test", "path": "/b/c", "value": 2}])
    assert failed_test.value.code == 422


def test_merge_patch_replaces_lists_and_deletes_nulls():
    assert merge_patch({"a": [1], "b": 1, "c": {"d": 1}}, {"a": [2], "b": None, "c": {"e": 2}}) == {
        "a": [2],
        "c": {"d": 1, "e": 2},
    }


def test_strategic_merge_patch_merges_named_lists_and_honours_delete_directives():
    current = {
        "containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}]
    }
    patch = {
        "containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
        ],
        "args": ["--x"],
    }
    assert strategic_merge_patch(current, patch) == {
        "containers": [
            {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
        ],
        "args": ["--x"],
    }


def deployment(image: str, *, sidecar: bool = False, replicas: int | None = None) -> dict:
    containers = [{"name": "main", "image": image}]
    if sidecar:
        containers.append({"name": "sidecar", "image": "envoy"})
    spec: dict = {"template": {"spec": {"containers": containers}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n"},
        "spec": spec,
    }


DESCRIBE = ("deployments", "d", "apps")


def test_field_paths_key_named_list_items():
    paths = leaf_paths(deployment("x"))
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"main"}', "f:image") in paths
    assert all(path[0] != "f:status" for path in paths)


def test_apply_drops_what_the_manager_no_longer_applies_but_keeps_other_owners_fields():
    first = server_side_apply(None, deployment("1", sidecar=True), "airflow", False, DESCRIBE)
    replicas_only = {**deployment("1"), "spec": {"replicas": 3}}
    scaled = server_side_apply(first, replicas_only, "hpa", False, DESCRIBE)
    reapplied = server_side_apply(scaled, deployment("2"), "airflow", False, DESCRIBE)
    containers = reapplied["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main"] and containers[0]["image"] == "2"
    assert reapplied["spec"]["replicas"] == 3  # owned by "hpa", untouched
    assert {e["manager"] for e in reapplied["metadata"]["managedFields"]} == {"airflow", "hpa"}


def test_apply_conflicts_name_the_other_manager_and_force_takes_ownership():
    first = server_side_apply(None, deployment("1", replicas=1), "airflow", False, DESCRIBE)
    with pytest.raises(KubeApiError) as raised:
        server_side_apply(first, deployment("1", replicas=5), "someone-else", False, DESCRIBE)
    assert raised.value.code == 409
    assert 'conflict with "airflow"' in raised.value.message and ".spec.replicas" in raised.value.message
    forced = server_side_apply(first, deployment("1", replicas=5), "someone-else", True, DESCRIBE)
    assert forced["spec"]["replicas"] == 5
    same_value = server_side_apply(first, deployment("1", replicas=1), "someone-else", False, DESCRIBE)
    assert same_value["spec"]["replicas"] == 1  # equal values are shared, not a conflict


@pytest.mark.parametrize(
    ("version", "builtin_pool"),
    [
        ("1.34.0-gke.1626000", True),
        ("1.34.0-gke.1625999", False),
        ("1.34.1-gke.1000000", True),
        ("v1.35", True),
        ("1.33.9-gke.9999999", False),
    ],
)
def test_gke_version_threshold_for_the_builtin_inference_pool(version, builtin_pool):
    assert serves_builtin_inference_pool(version) is builtin_pool


def test_gke_versions_order_numerically_and_reject_garbage():
    assert GkeVersion.parse("1.34.10-gke.1") > GkeVersion.parse("1.34.9-gke.999")
    assert str(GkeVersion.parse("1.34")) == "1.34.0-gke.0"
    with pytest.raises(ValueError, match="not a GKE version"):
        GkeVersion.parse("latest")


@pytest.mark.parametrize(
    ("location", "region"),
    [("us-central1", "us-central1"), ("us-central1-a", "us-central1"), ("europe-west4-b", "europe-west4")],
)
def test_region_of_a_location(location, region):
    assert region_of(location) == region


def test_aggregated_discovery_is_recognised_only_for_v2():
    assert wants_aggregated(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    )
    assert not wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
    assert not wants_aggregated("application/json")


def config_map(name: str, **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "n"},
        "data": data,
    }


async def test_store_versions_and_change_feed():
    store = ObjectStore()
    queue = store.subscribe()
    created = store.create(config_map("a", k="1"))
    unchanged = store.replace(created)
    assert unchanged["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = store.replace({**created, "data": {"k": "2"}})
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert changed["metadata"]["generation"] == 2
    with pytest.raises(KubeApiError) as stale:
        store.replace({**created, "data": {"k": "3"}})
    assert stale.value.reason == "Conflict"
    store.delete("v1", "ConfigMap", "n", "a")
    events = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [event_type for event_type, _ in events] == ["ADDED", "MODIFIED", "DELETED"]
    replay = store.events_since(int(created["metadata"]["resourceVersion"]))
    assert [event_type for event_type, _ in replay] == ["MODIFIED", "DELETED"]
    store.unsubscribe(queue)


async def test_store_hands_out_copies_and_cascades_through_owner_references():
    store = ObjectStore()
    owner = store.create(config_map("owner"))
    store.create(
        {
            **config_map("child"),
            "metadata": {
                **config_map("child")["metadata"],
                "ownerReferences": [{"uid": owner["metadata"]["uid"]}],
            },
        }
    )
    fetched = store.get("v1", "ConfigMap", "n", "owner")
    fetched["data"]["poison"] = "x"
    assert "poison" not in store.get("v1", "ConfigMap", "n", "owner")["data"]
    store.delete("v1", "ConfigMap", "n", "owner")
    assert store.list("v1", "ConfigMap") == []


def test_dropping_every_label_keeps_the_rest_of_metadata():
    labelled_map = {**config_map("m"), "metadata": {**config_map("m")["metadata"], "labels": {"a": "1"}}}
    first = server_side_apply(None, labelled_map, "airflow", False, ("configmaps", "m", ""))
    first["metadata"].update(uid="u-1", resourceVersion="7")
    again = server_side_apply(first, config_map("m"), "airflow", False, ("configmaps", "m", ""))
    assert "labels" not in again["metadata"]
    assert (again["metadata"]["name"], again["metadata"]["uid"]) == ("m", "u-1")


def test_watch_filter_translates_selection_changes():
    config_maps = next(t for t in BUILTIN_TYPES if t.kind == "ConfigMap")
    watch_filter = WatchFilter(config_maps, "n", parse_label_selector("tier=web"), [])
    web = {**config_map("a"), "metadata": {**config_map("a")["metadata"], "labels": {"tier": "web"}}}
    db = {**web, "metadata": {**web["metadata"], "labels": {"tier": "db"}}}
    other_namespace = {**web, "metadata": {**web["metadata"], "namespace": "elsewhere"}}
    assert watch_filter.start_from_listing([]) == []
    assert watch_filter.translate("ADDED", db) is None
    assert watch_filter.translate("MODIFIED", web) == "ADDED"
    assert watch_filter.translate("MODIFIED", web) == "MODIFIED"
    assert watch_filter.translate("MODIFIED", db) == "DELETED"
    assert watch_filter.translate("DELETED", db) is None
    assert watch_filter.translate("ADDED", other_namespace) is None
