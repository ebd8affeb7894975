"""kubectl 1.32 against the Kubernetes API twin, the way the tutorial uses it."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.sandbox.conftest import add_proxy_only_subnet

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed on this machine"),
]

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


def test_kubectl_without_a_valid_token_is_refused(kube, tmp_path):
    config = tmp_path / "bad-kubeconfig.yaml"
    config.write_text(kube.kubeconfig.read_text().replace(kube.token, "forged-token"))
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(config), "get", "pods"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "provide credentials" in result.stderr
