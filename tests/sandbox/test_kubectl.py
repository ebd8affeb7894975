"""kubectl 1.32 against the Kubernetes API twin, the way the tutorial and a user debugging use it.

The tests that run kubectl are marked `tools` (skipped when it is missing, failed under CI=true); the protobuf and
content-negotiation tests below them speak HTTP with the bytes kubectl sends, so they always run.
"""

from __future__ import annotations

import base64
import subprocess
import time

import httpx
import pytest
import yaml

from tests._tools import needs_tools
from tests.sandbox.conftest import add_proxy_only_subnet

needs_kubectl = needs_tools("kubectl")


MANIFESTS = """\
apiVersion: v1
kind: Secret
metadata:
  name: hf-token
  namespace: {namespace}
stringData:
  token: hf_kubectl_test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: vllm-llama3-1-8b-instruct
  namespace: {namespace}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: vllm-llama3-1-8b-instruct}}
  template:
    metadata:
      labels: {{app: vllm-llama3-1-8b-instruct}}
    spec:
      containers:
      - name: vllm
        image: vllm/vllm-openai:v0.8.5
        args: [--model, meta-llama/Llama-3.1-8B-Instruct, --port, "8000"]
        ports: [{{containerPort: 8000, name: http}}]
        env:
        - name: HUGGING_FACE_HUB_TOKEN
          valueFrom:
            secretKeyRef: {{name: hf-token, key: token}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: inference-gateway
  namespace: {namespace}
spec:
  gatewayClassName: gke-l7-regional-external-managed
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
"""

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: inferenceobjectives.inference.networking.x-k8s.io
spec:
  group: inference.networking.x-k8s.io
  scope: Namespaced
  names: {kind: InferenceObjective, plural: inferenceobjectives, singular: inferenceobjective, listKind: InferenceObjectiveList}
  versions:
  - name: v1alpha2
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

OBJECTIVE = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {{name: base-model, namespace: {namespace}}}
spec:
  priority: 2
  poolRef: {{name: vllm-llama-pool}}
"""


@pytest.fixture
def kubectl(kube):
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(kube.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


@needs_kubectl
def test_the_tutorial_flow_with_kubectl(kube, kubectl, namespace, tmp_path):
    add_proxy_only_subnet(kube)
    manifests = tmp_path / "inference.yaml"
    manifests.write_text(MANIFESTS.format(namespace=namespace))

    applied = kubectl("apply", "--server-side", "-f", str(manifests))
    assert "deployment.apps/vllm-llama3-1-8b-instruct serverside-applied" in applied.stdout
    assert "gateway.gateway.networking.k8s.io/inference-gateway serverside-applied" in applied.stdout
    assert kubectl("apply", "--server-side", "-f", str(manifests)).returncode == 0  # idempotent

    listed = kubectl("get", "deployments", "-n", namespace)
    assert "vllm-llama3-1-8b-instruct" in listed.stdout

    waited = kubectl(
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=vllm-llama3-1-8b-instruct",
        "-n",
        namespace,
        "--timeout=30s",
    )
    assert "condition met" in waited.stdout

    address = ""
    deadline = time.monotonic() + 15
    while not address and time.monotonic() < deadline:  # the tutorial's loop, bounded
        jsonpath = "jsonpath={.status.addresses[0].value}"
        address = kubectl(
            "get", "gateway", "inference-gateway", "-n", namespace, "-o", jsonpath
        ).stdout.strip()
        if not address:
            time.sleep(0.2)
    assert address.startswith("127.")

    pods_table = kubectl("get", "pods", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert pods_table[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert pods_table[1].split()[1:3] == ["1/1", "Running"]
    gateways_table = kubectl("get", "gateway", "-n", namespace).stdout.splitlines()
    assert gateways_table[0].split() == ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"]
    assert gateways_table[1].split()[1:4] == ["gke-l7-regional-external-managed", address, "True"]

    described = kubectl("describe", "pod", "-l", "app=vllm-llama3-1-8b-instruct", "-n", namespace).stdout
    assert "Started container vllm" in described and "Scheduled" in described

    logs = kubectl("logs", "-l", "app=vllm-llama3-1-8b-instruct", "-n", namespace).stdout
    assert "meta-llama/Llama-3.1-8B-Instruct" in logs and "Application startup complete." in logs

    kubectl("scale", "deployment/vllm-llama3-1-8b-instruct", "-n", namespace, "--replicas=2")
    kubectl("rollout", "status", "deployment/vllm-llama3-1-8b-instruct", "-n", namespace, "--timeout=20s")
    assert len(kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()) == 2

    created_again = kubectl("create", "-f", str(manifests), check=False)
    assert created_again.returncode != 0
    assert "Error from server (AlreadyExists)" in created_again.stderr
    assert 'deployments.apps "vllm-llama3-1-8b-instruct" already exists' in created_again.stderr

    deleted = kubectl("delete", "-f", str(manifests))
    assert 'deployment.apps "vllm-llama3-1-8b-instruct" deleted' in deleted.stdout
    assert "No resources found" in kubectl("get", "pods", "-n", namespace).stderr


@needs_kubectl
def test_crd_then_custom_resource_in_separate_invocations(kubectl, namespace, tmp_path):
    crd = tmp_path / "crd.yaml"
    crd.write_text(CRD)
    objective = tmp_path / "objective.yaml"
    objective.write_text(OBJECTIVE.format(namespace=namespace))

    kubectl("apply", "--server-side", "-f", str(crd))
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/inferenceobjectives.inference.networking.x-k8s.io",
        "--timeout=10s",
    )
    kubectl("apply", "--server-side", "-f", str(objective))
    priority = kubectl(
        "get", "inferenceobjective", "base-model", "-n", namespace, "-o", "jsonpath={.spec.priority}"
    )
    assert priority.stdout == "2"
    kubectl("delete", "-f", str(crd))
    missing = kubectl("get", "inferenceobjectives", "-n", namespace, check=False)
    assert missing.returncode != 0


@needs_kubectl
def test_status_patch_and_client_side_apply(kubectl, namespace, tmp_path):
    manifests = tmp_path / "inference.yaml"
    manifests.write_text(MANIFESTS.format(namespace=namespace))
    kubectl("apply", "-f", str(manifests))
    annotation = kubectl(
        "get",
        "deployment",
        "vllm-llama3-1-8b-instruct",
        "-n",
        namespace,
        "-o",
        r"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}",
    )
    assert '"kind":"Deployment"' in annotation.stdout
    kubectl(
        "patch",
        "gateway",
        "inference-gateway",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"conditions":[]}}',
    )


@needs_kubectl
def test_kubectl_without_a_valid_token_is_refused(kube, tmp_path):
    config = tmp_path / "bad-kubeconfig.yaml"
    config.write_text(kube.kubeconfig.read_text().replace(kube.token, "forged-token"))
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(config), "get", "pods"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "provide credentials" in result.stderr


# -- what a user types while debugging --------------------------------------------------------------

DEPLOYMENT = "vllm-llama3-1-8b-instruct"


def stored(kube, kind: str, namespace: str | None, name: str, api_version: str = "v1"):
    return kube.run(kube.cluster.store.get, api_version, kind, namespace, name)


@needs_kubectl
def test_create_namespace_secret_configmap_and_serviceaccount_as_kubectl_sends_them(kube, kubectl, tmp_path):
    # kubectl's typed clients send these as protobuf (see sandbox/kube/content.py).
    name = "debugging"
    assert kubectl("create", "namespace", name).stdout.strip() == f"namespace/{name} created"
    try:
        assert stored(kube, "Namespace", None, name)["status"]["phase"] == "Active"
        again = kubectl("create", "namespace", name, check=False)
        assert again.returncode != 0 and f'namespaces "{name}" already exists' in again.stderr

        kubectl("create", "secret", "generic", "hf-token", "-n", name, "--from-literal=token=hf_debugging")
        secret = stored(kube, "Secret", name, "hf-token")
        assert base64.b64decode(secret["data"]["token"]) == b"hf_debugging"
        assert secret["type"] == "Opaque"  # defaulted by the server: kubectl leaves it empty

        blob = tmp_path / "blob.bin"
        blob.write_bytes(b"\x00\xff\x10bin")  # not UTF-8: kubectl sends it as binaryData
        created = kubectl(
            "create",
            "configmap",
            "settings",
            "-n",
            name,
            "--from-literal=mode=debug",
            "--from-literal=level=2",
            f"--from-file=blob={blob}",
        )
        assert created.stdout.strip() == "configmap/settings created"
        config_map = stored(kube, "ConfigMap", name, "settings")
        assert config_map["data"] == {"mode": "debug", "level": "2"}
        assert base64.b64decode(config_map["binaryData"]["blob"]) == b"\x00\xff\x10bin"

        kubectl("create", "serviceaccount", "debugger", "-n", name)
        assert stored(kube, "ServiceAccount", name, "debugger") is not None

        shown = yaml.safe_load(kubectl("get", "configmap", "settings", "-n", name, "-o", "yaml").stdout)
        assert shown["data"] == config_map["data"] and shown["binaryData"] == config_map["binaryData"]
        assert shown["metadata"]["uid"] == config_map["metadata"]["uid"]
    finally:
        kubectl("delete", "namespace", name, check=False)
    assert stored(kube, "Namespace", None, name) is None


@needs_kubectl
def test_label_annotate_and_delete(kube, kubectl, namespace):
    kubectl("create", "configmap", "settings", "-n", namespace, "--from-literal=mode=debug")
    assert (
        "configmap/settings labeled"
        in kubectl("label", "configmap", "settings", "-n", namespace, "tier=debug").stdout
    )
    annotated = kubectl("annotate", "configmap", "settings", "-n", namespace, "owner=me")
    assert "configmap/settings annotated" in annotated.stdout
    metadata = stored(kube, "ConfigMap", namespace, "settings")["metadata"]
    assert metadata["labels"] == {"tier": "debug"} and metadata["annotations"] == {"owner": "me"}
    selected = kubectl("get", "configmaps", "-n", namespace, "-l", "tier=debug", "-o", "name").stdout.split()
    assert selected == ["configmap/settings"]

    kubectl("label", "configmap", "settings", "-n", namespace, "tier-")
    kubectl("annotate", "configmap", "settings", "-n", namespace, "owner=you", "--overwrite")
    metadata = stored(kube, "ConfigMap", namespace, "settings")["metadata"]
    assert not metadata.get("labels") and metadata["annotations"] == {"owner": "you"}

    deleted = kubectl("delete", "configmap", "settings", "-n", namespace)
    assert deleted.stdout.strip() == 'configmap "settings" deleted'
    assert stored(kube, "ConfigMap", namespace, "settings") is None
    missing = kubectl("delete", "configmap", "settings", "-n", namespace, check=False)
    assert missing.returncode != 0 and 'configmaps "settings" not found' in missing.stderr


@needs_kubectl
def test_describe_logs_wait_and_rollout_status_of_a_model_deployment(kube, kubectl, namespace, tmp_path):
    add_proxy_only_subnet(kube)
    manifests = tmp_path / "inference.yaml"
    manifests.write_text(MANIFESTS.format(namespace=namespace))
    kubectl("apply", "--server-side", "-f", str(manifests))

    rolled = kubectl("rollout", "status", f"deployment/{DEPLOYMENT}", "-n", namespace, "--timeout=30s")
    assert f'deployment "{DEPLOYMENT}" successfully rolled out' in rolled.stdout
    for target, condition in (
        (f"deployment/{DEPLOYMENT}", "Available"),
        ("gateway/inference-gateway", "Programmed"),
    ):
        waited = kubectl("wait", f"--for=condition={condition}", target, "-n", namespace, "--timeout=30s")
        assert "condition met" in waited.stdout

    pod = kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.split()[0].removeprefix("pod/")
    described_pod = kubectl("describe", "pod", pod, "-n", namespace).stdout
    events = described_pod.split("\nEvents:", 1)[1]
    assert f"Successfully assigned {namespace}/{pod} to " in events and "Started container vllm" in events
    assert "SYNC" not in events  # only this pod's events (fieldSelector involvedObject.*)
    # --sort-by needs whole objects in the Table rows (includeObject=Object).
    by_time = kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp").stdout
    assert "Started container vllm" in by_time and "SYNC on" in by_time

    described_deployment = kubectl("describe", "deployment", DEPLOYMENT, "-n", namespace).stdout
    assert "1 desired | 1 updated | 1 total | 1 available | 0 unavailable" in described_deployment
    replica_set = stored(kube, "Pod", namespace, pod)["metadata"]["ownerReferences"][0]["name"]
    assert f"NewReplicaSet:   {replica_set} (1/1 replicas created)" in described_deployment

    described_gateway = kubectl("describe", "gateway", "inference-gateway", "-n", namespace).stdout
    gateway_events = described_gateway.split("\nEvents:", 1)[1]
    assert "sc-gateway-controller" in gateway_events and "Successfully assigned" not in gateway_events

    logs = kubectl("logs", f"deployment/{DEPLOYMENT}", "-n", namespace).stdout
    assert "meta-llama/Llama-3.1-8B-Instruct" in logs and "Application startup complete." in logs
    assert len(kubectl("logs", pod, "-n", namespace, "-c", "vllm", "--tail=1").stdout.splitlines()) == 1

    shown = yaml.safe_load(kubectl("get", "deployment", DEPLOYMENT, "-n", namespace, "-o", "yaml").stdout)
    current = stored(kube, "Deployment", namespace, DEPLOYMENT, api_version="apps/v1")
    assert shown["status"] == current["status"] and shown["status"]["readyReplicas"] == 1


# -- content negotiation, with the bytes kubectl sends (no kubectl needed) -------------------------

# Request bodies kubectl v1.32.4 sent (`-v=9`) for `kubectl create namespace captured-ns`,
# `create secret generic hf-token -n captured-ns --from-literal=token=hf_abc` and
# `create configmap cfg -n captured-ns --from-literal=a=b --from-file=blob=<bytes 00 ff 10 "bin">`.
CAPTURED_NAMESPACE = bytes.fromhex(
    "6b3873000a0f0a02763112094e616d65737061636512230a1b0a0b63617074757265642d6e7312001a0022002a00320038"
    "00420012001a020a001a002200"
)
CAPTURED_SECRET = bytes.fromhex(
    "6b3873000a0c0a027631120653656372657412380a230a0868662d746f6b656e12001a0b63617074757265642d6e732200"
    "2a00320038004200120f0a05746f6b656e120668665f6162631a001a002200"
)
CAPTURED_CONFIG_MAP = bytes.fromhex(
    "6b3873000a0f0a0276311209436f6e6669674d617012380a1e0a0363666712001a0b63617074757265642d6e7322002a00"
    "32003800420012060a01611201621a0e0a04626c6f62120600ff1062696e1a002200"
)
PROTOBUF = "application/vnd.kubernetes.protobuf"
KUBECTL_ACCEPT = f"{PROTOBUF},application/json"


@pytest.fixture(scope="module")
def http(kube):
    with httpx.Client(
        base_url=kube.url,
        verify=str(kube.ca_file),
        headers={"Authorization": f"Bearer {kube.token}", "Accept": KUBECTL_ACCEPT},
        timeout=10,
    ) as client:
        yield client


def _post(http, path: str, body: bytes, content_type: str = PROTOBUF) -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": content_type})


def test_protobuf_bodies_kubectl_sends_are_decoded_and_answered_in_json(kube, http):
    created = _post(http, "/api/v1/namespaces", CAPTURED_NAMESPACE)
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"] == "application/json"  # in kubectl's Accept list
    assert created.json()["metadata"]["name"] == "captured-ns"
    try:
        assert _post(http, "/api/v1/namespaces/captured-ns/secrets", CAPTURED_SECRET).status_code == 201
        secret = stored(kube, "Secret", "captured-ns", "hf-token")
        assert (
            secret["data"] == {"token": base64.b64encode(b"hf_abc").decode()} and secret["type"] == "Opaque"
        )
        assert "creationTimestamp" in secret["metadata"]  # the server's, not the zero time kubectl sent

        assert (
            _post(http, "/api/v1/namespaces/captured-ns/configmaps", CAPTURED_CONFIG_MAP).status_code == 201
        )
        config_map = stored(kube, "ConfigMap", "captured-ns", "cfg")
        assert config_map["data"] == {"a": "b"}
        assert config_map["binaryData"] == {"blob": base64.b64encode(b"\x00\xff\x10bin").decode()}

        # The body names a Secret; the URL names configmaps: refused, as the API server does.
        mismatched = _post(http, "/api/v1/namespaces/captured-ns/configmaps", CAPTURED_SECRET)
        assert mismatched.status_code == 400
        truncated = _post(http, "/api/v1/namespaces/captured-ns/secrets", CAPTURED_SECRET[:-9])
        assert truncated.status_code == 400 and truncated.json()["reason"] == "BadRequest"
    finally:
        http.delete("/api/v1/namespaces/captured-ns")


def test_an_unsupported_content_type_is_the_api_servers_415(http, namespace):
    # k8s.io/apiserver negotiation/errors.go errUnsupportedMediaType, with the serializer's media types.
    refused = _post(http, "/api/v1/namespaces", b"name: x", content_type="text/plain")
    assert refused.status_code == 415
    assert refused.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        "reason": "UnsupportedMediaType",
        "code": 415,
    }
    as_yaml = _post(
        http,
        "/api/v1/namespaces",
        b"apiVersion: v1\nkind: Namespace\nmetadata: {name: from-yaml}\n",
        "application/yaml",
    )
    assert as_yaml.status_code == 201
    http.delete("/api/v1/namespaces/from-yaml")
    # A custom resource has no strategic merge patch (apiextensions-apiserver customresource_handler.go).
    strategic = http.patch(
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/absent",
        content=b"{}",
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert strategic.status_code == 415
    assert strategic.json()["message"].endswith(
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )


def test_answers_are_json_when_the_accept_list_allows_it(http):
    answered = http.get("/api/v1/namespaces/default")
    assert answered.status_code == 200 and answered.headers["Content-Type"] == "application/json"
    # Only protobuf: a real server would write it; the twin writes JSON only, and says so with a 406.
    refused = http.get("/api/v1/namespaces/default", headers={"Accept": PROTOBUF})
    assert refused.status_code == 406
    assert refused.json()["message"] == "only the following media types are accepted: application/json"
