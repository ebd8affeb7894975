"""ClusterKubernetesHook against a sandbox GKE cluster: auth through the GCP connection, server-side
apply reporting, deletes that respect ownership, reads, and retries of transient errors."""

from __future__ import annotations

import pytest
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from gke_inference.hooks.kubernetes import FIELD_MANAGER, KubernetesApplyError
from gke_inference.ownership import K8S_LABELS
from gke_inference.results import summarize


def config_map(namespace: str, name: str, data: dict, labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": K8S_LABELS if labels is None else labels,
        },
        "data": data,
    }


def test_apply_reports_created_then_unchanged_then_updated(kube_cluster, namespace):
    hook = kube_cluster.hook()
    objects = [config_map(namespace, "one", {"a": "1"}), config_map(namespace, "two", {"b": "2"})]

    first = hook.apply(objects)
    assert [r.action for r in first] == ["created", "created"]
    assert [r.ref for r in first] == [f"ConfigMap/{namespace}/one", f"ConfigMap/{namespace}/two"]

    again = hook.apply(objects)
    assert summarize(again) == {"unchanged": [f"ConfigMap/{namespace}/one", f"ConfigMap/{namespace}/two"]}

    changed = hook.apply([config_map(namespace, "one", {"a": "changed"})])
    assert [r.action for r in changed] == ["updated"]
    stored = hook.get("v1", "ConfigMap", "one", namespace)
    assert stored["data"] == {"a": "changed"}
    managers = {entry["manager"] for entry in stored["metadata"].get("managedFields") or []}
    assert FIELD_MANAGER in managers


def test_apply_sends_server_side_apply_with_force(kube_cluster, namespace, sandbox):
    kube_cluster.hook().apply([config_map(namespace, "ssa", {"k": "v"})])
    patches = [
        entry
        for entry in sandbox.requests("kube")
        if entry["method"] == "PATCH" and entry["path"].endswith(f"/namespaces/{namespace}/configmaps/ssa")
    ]
    assert patches, "expected a PATCH for the apply"
    assert f"fieldManager={FIELD_MANAGER}" in patches[-1]["query"]
    assert "force=" in patches[-1]["query"].lower()


def test_get_and_list_with_label_selector(kube_cluster, namespace):
    hook = kube_cluster.hook()
    hook.apply(
        [
            config_map(namespace, "red", {}, labels={**K8S_LABELS, "color": "red"}),
            config_map(namespace, "blue", {}, labels={**K8S_LABELS, "color": "blue"}),
        ]
    )
    assert hook.get("v1", "ConfigMap", "missing", namespace) is None
    red = hook.list("v1", "ConfigMap", namespace=namespace, label_selector={"color": "red"})
    assert [obj["metadata"]["name"] for obj in red] == ["red"]
    both = hook.list("v1", "ConfigMap", namespace=namespace, label_selector="color")
    assert sorted(obj["metadata"]["name"] for obj in both) == ["blue", "red"]


def test_delete_only_touches_what_the_dag_owns(kube_cluster, namespace):
    hook = kube_cluster.hook()
    ours = config_map(namespace, "ours", {})
    theirs = config_map(namespace, "theirs", {}, labels={"team": "someone-else"})
    hook.apply([ours, theirs])

    results = hook.delete([ours, theirs, config_map(namespace, "never-existed", {})])

    assert [r.action for r in results] == ["deleted", "not_owned", "absent"]
    assert hook.get("v1", "ConfigMap", "ours", namespace) is None
    assert hook.get("v1", "ConfigMap", "theirs", namespace) is not None
    assert [r.action for r in hook.delete([ours])] == ["absent"]


def test_unknown_kind_has_a_clear_error(kube_cluster):
    with pytest.raises(ResourceNotFoundError, match="serves no Widget"):
        kube_cluster.hook().resource("example.com/v1", "Widget")


def test_refused_object_raises_with_status_and_reference(kube_cluster, namespace):
    bad = config_map(namespace, "Not_A_Valid_Name", {})
    with pytest.raises(
        KubernetesApplyError, match=r"ConfigMap/.*/Not_A_Valid_Name failed: HTTP 422"
    ) as caught:
        kube_cluster.hook().apply([bad])
    assert caught.value.http_status == 422


@pytest.mark.parametrize("status", [429, 503])
def test_transient_errors_are_retried(kube_cluster, namespace, sandbox, clean_faults, status):
    path = f"/namespaces/{namespace}/configmaps/flaky"
    sandbox.faults_add(api="kube", method="PATCH", path=path, status=status, retry_after=0, count=2)

    results = kube_cluster.hook().apply([config_map(namespace, "flaky", {"k": "v"})])

    assert [r.action for r in results] == ["created"]
    statuses = [
        e["status"] for e in sandbox.requests("kube") if e["method"] == "PATCH" and e["path"].endswith(path)
    ]
    assert statuses == [status, status, 201]
