"""API discovery runs once per task (issue 14's overhead note): counted in the twin's request log.

Discovery is ``GET /version`` and ``/apis`` (the group list), then one ``/api/v1`` or
``/apis/<group>/<version>`` per group version a task touches. Rediscovering every time a hook is
built doubled that per task; a kind that appears later in the same task (a CRD just installed)
must still be found.
"""

from __future__ import annotations

import re
import tempfile

from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.ownership import K8S_LABELS
from tests.plugins.test_kube_operators import values_for

# Group lists and group-version resource lists; /version is the server info read with them.
DISCOVERY_PATH = re.compile(r"^/(version|api|apis|api/v1|apis/[^/]+/[^/]+)/?$")


def discovery_requests(sandbox, since: int) -> list[str]:
    entries = sandbox.requests("kube")[since:]
    return [e["path"] for e in entries if e["method"] == "GET" and DISCOVERY_PATH.match(e["path"])]


def log_size(sandbox) -> int:
    return len(sandbox.requests("kube"))


def test_one_apply_task_discovers_each_document_once(kube_cluster, namespace, sandbox, tmp_path, monkeypatch):
    # A worker's temp directory as on a first contact with this cluster: no discovery cache file.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    apply_gateway = ApplyManifestsOperator(
        task_id="apply_gateway",
        manifest="gateway.yaml",
        values=values_for(namespace=namespace),
        **kube_cluster.kwargs,
    )
    since = log_size(sandbox)
    result = apply_gateway.execute({})
    assert result["created"]

    paths = discovery_requests(sandbox, since)
    assert paths.count("/apis") == 1, paths
    assert paths.count("/version") == 1, paths
    assert len(paths) == len(set(paths)), f"a discovery document was fetched twice: {paths}"
    # gateway.yaml holds Gateway and HTTPRoute, one group version
    assert "/apis/gateway.networking.k8s.io/v1" in paths
    assert not list(tmp_path.glob("*.json")), "discovery went to a cache file another cluster could read"


def test_a_kind_installed_later_in_the_same_task_is_found(kube_cluster, namespace, sandbox):
    hook = kube_cluster.hook()
    group = f"h1{namespace.replace('-', '')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}", "labels": K8S_LABELS},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace, "labels": K8S_LABELS},
    }
    assert hook.delete([widget]) and hook.delete([widget])[0].action == "absent"  # discovered: no Widget yet

    hook.apply([crd])
    hook.wait_for_crds_established([crd["metadata"]["name"]], timeout=30)

    assert [r.action for r in hook.apply([widget])] == ["created"]
