"""The data plane inside a running sandbox: objects go in through the Kubernetes API with the official
client, the simulated controllers make pods Ready and program the Gateway (which needs a proxy-only
subnet created through the Compute API), and the official openai client talks to the gateway's address.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import httpx
import kubernetes
import openai
import pytest

from sandbox.dataplane.harness import APP, GATEWAY, MODEL, POOL, POOL_REF, WRONG_MODEL

PROJECT_REGION = "us-central1"
NETWORK = "dataplane-lab-vpc"
CLUSTER = "dataplane-lab"
GATEWAY_API = ("gateway.networking.k8s.io", "v1")
NETWORKING_GKE = ("networking.gke.io", "v1")


def wait_for(what: str, probe: Callable[[], object], timeout: float = 15.0, interval: float = 0.05):
    """Poll probe() until it returns something truthy (bounded); return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def create_proxy_only_subnet(info: dict) -> None:
    """Tutorial 1.1-1.3 through the Compute REST API: the Gateway is programmed only with this subnet."""
    api = info["api_endpoint"]
    project = info["project_id"]
    headers = {"Authorization": f"Bearer {info['access_token']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as client:
        enable = client.post(f"/v1/projects/{project}/services/compute.googleapis.com:enable").json()
        wait_for("compute enabled", lambda: client.get(f"/v1/{enable['name']}").json().get("done"))
        network = client.post(
            f"/compute/v1/projects/{project}/global/networks",
            json={"name": NETWORK, "autoCreateSubnetworks": False},
        )
        network.raise_for_status()
        client.post(f"/compute/v1/projects/{project}/global/operations/{network.json()['name']}/wait")
        subnet = client.post(
            f"/compute/v1/projects/{project}/regions/{PROJECT_REGION}/subnetworks",
            json={
                "name": f"{NETWORK}-proxy",
                "network": f"projects/{project}/global/networks/{NETWORK}",
                "ipCidrRange": "10.129.0.0/23",
                "purpose": "REGIONAL_MANAGED_PROXY",
                "role": "ACTIVE",
            },
        )
        subnet.raise_for_status()
        client.post(
            f"/compute/v1/projects/{project}/regions/{PROJECT_REGION}/operations/{subnet.json()['name']}/wait"
        )


@pytest.fixture(scope="module")
def kube(sandbox, tmp_path_factory):
    """A cluster in the session sandbox and a kubernetes ApiClient for it."""
    info = sandbox.info
    create_proxy_only_subnet(info)
    start = functools.partial(
        sandbox.sandbox.start_kube_cluster,
        project=info["project_id"],
        location=PROJECT_REGION,
        name=CLUSTER,
        network=NETWORK,
        subnetwork=f"{NETWORK}-nodes",
    )
    cluster = sandbox.call(start)
    ca_file = tmp_path_factory.mktemp("dataplane") / "ca.pem"
    ca_file.write_bytes(cluster.ca_pem)
    configuration = kubernetes.client.Configuration()
    configuration.host = cluster.url
    configuration.ssl_ca_cert = str(ca_file)
    configuration.api_key = {"authorization": f"Bearer {info['access_token']}"}
    with kubernetes.client.ApiClient(configuration) as api_client:
        yield types_of(api_client)
    sandbox.call(
        sandbox.sandbox.stop_kube_cluster,
        f"projects/{info['project_id']}/locations/{PROJECT_REGION}/clusters/{CLUSTER}",
    )


class types_of:  # noqa: N801 (a bundle of API groups, used like a namespace)
    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)

    def create(self, group_version: tuple[str, str], plural: str, body: dict) -> None:
        self.custom.create_namespaced_custom_object(*group_version, "default", plural, body)

    def get(self, group_version: tuple[str, str], plural: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(*group_version, "default", plural, name)


def deployment(name: str, labels: dict, container: dict, replicas: int) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@pytest.fixture(scope="module")
def gateway_url(kube) -> str:
    """Tutorial 3.1-4.1 through the Kubernetes API; returns the gateway's base URL once it serves."""
    kube.core.create_namespaced_secret(
        "default", {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_dataplane_lab_token"}}
    )
    vllm = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.8.5",
        "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        "args": ["--model", MODEL, "--tensor-parallel-size", "1", "--port", "8000"],
        "env": [
            {
                "name": "HUGGING_FACE_HUB_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
            }
        ],
        "ports": [{"containerPort": 8000, "name": "http"}],
    }
    kube.apps.create_namespaced_deployment("default", deployment(APP, {"app": APP}, vllm, replicas=2))
    kube.create(
        ("inference.networking.k8s.io", "v1"),
        "inferencepools",
        {
            "apiVersion": "inference.networking.k8s.io/v1",
            "kind": "InferencePool",
            "metadata": {"name": POOL},
            "spec": {
                "selector": {"matchLabels": {"app": APP}},
                "targetPorts": [{"number": 8000}],
                "endpointPickerRef": {"name": f"{POOL}-epp", "port": {"number": 9002}},
            },
        },
    )
    kube.create(
        GATEWAY_API,
        "gateways",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY},
            "spec": {
                "gatewayClassName": "gke-l7-regional-external-managed",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
    )
    kube.create(
        GATEWAY_API,
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "llm-route"},
            "spec": {
                "parentRefs": [{"name": GATEWAY}],
                "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [POOL_REF]}
                ],
            },
        },
    )

    address = wait_for(
        "the Gateway address",
        lambda: (
            (kube.get(GATEWAY_API, "gateways", GATEWAY).get("status") or {})
            .get("addresses", [{}])[0]
            .get("value")
        ),
    )
    wait_for(
        "Ready model pods",
        lambda: (kube.apps.read_namespaced_deployment_status(APP, "default").status.ready_replicas or 0) == 2,
    )
    base_url = f"http://{address}"
    wait_for("the gateway to serve", lambda: _serves(base_url))
    return base_url


def _serves(base_url: str) -> bool:
    try:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
        return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_openai_client_through_a_sandbox_cluster(gateway_url, sandbox):
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=10)
    served_by = set()
    for index in range(6):
        response = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"GKE Inference Gatewayについて一言で {index}"}],
            max_tokens=100,
        )
        served_by.add(response.headers["x-inference-pod"])
        assert response.parse().choices[0].message.content
    assert all(pod.startswith(f"{APP}-") for pod in served_by)
    gateway_log = [e for e in sandbox.requests("gateway") if e["path"] == "/v1/chat/completions"]
    model_log = [e for e in sandbox.requests("model") if e["path"] == "/v1/chat/completions"]
    assert len(gateway_log) >= 6 and len(model_log) >= 6


def test_gateway_faults_from_the_sandbox_fault_table(gateway_url, clean_faults):
    clean_faults.faults_add(api="gateway", method="POST", path="^/v1/chat/completions$", status=503, count=1)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    assert httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=5).status_code == 503
    assert httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=5).status_code == 200


def test_model_server_faults_pass_through_the_gateway(gateway_url, clean_faults):
    """A fault on the pods' API reaches the client as the pod's answer; metrics scrapes that are dropped
    leave the picker working on its last metrics."""
    clean_faults.faults_add(api="model", method="GET", path="^/metrics$", drop=True, count=20)
    clean_faults.faults_add(api="model", method="POST", path="^/v1/chat/completions$", status=500, count=1)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    failed = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=5)
    assert failed.status_code == 500
    assert "x-gateway-destination-endpoint" in failed.headers  # it came from a pod, not the gateway
    assert httpx.post(f"{gateway_url}/v1/chat/completions", json=body, timeout=5).status_code == 200


def test_body_based_routing_installed_through_the_kubernetes_api(gateway_url, kube):
    """Tutorial 5.1: the BBR chart's objects, then body-routing.yaml replacing the catch-all route."""
    labels = {"app": "body-based-router"}
    bbr = {
        "name": "bbr",
        "image": "registry.k8s.io/gateway-api-inference-extension/bbr:v1.0.0",
        "args": ["--streaming", "--v", "3"],
        "ports": [{"containerPort": 9004}, {"containerPort": 9005}],
    }
    kube.apps.create_namespaced_deployment(
        "default", deployment("body-based-router", labels, bbr, replicas=1)
    )
    kube.core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "body-based-router"},
            "spec": {
                "selector": labels,
                "ports": [{"port": 9004, "targetPort": 9004, "appProtocol": "HTTP2"}],
            },
        },
    )
    kube.create(
        NETWORKING_GKE,
        "gcproutingextensions",
        {
            "apiVersion": "networking.gke.io/v1",
            "kind": "GCPRoutingExtension",
            "metadata": {"name": "body-based-router"},
            "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY}],
                "extensionChains": [
                    {
                        "name": "chain1",
                        "extensions": [
                            {
                                "name": "ext1",
                                "authority": "myext.com",
                                "timeout": "1s",
                                "backendRef": {
                                    "group": "",
                                    "kind": "Service",
                                    "name": "body-based-router",
                                    "port": 9004,
                                },
                            }
                        ],
                    }
                ],
            },
        },
    )
    kube.custom.patch_namespaced_custom_object(
        *GATEWAY_API,
        "default",
        "httproutes",
        "llm-route",
        {
            "spec": {
                "rules": [
                    {
                        "matches": [
                            {
                                "headers": [
                                    {"type": "Exact", "name": "X-Gateway-Model-Name", "value": MODEL}
                                ],
                                "path": {"type": "PathPrefix", "value": "/"},
                            }
                        ],
                        "backendRefs": [POOL_REF],
                    }
                ]
            }
        },
    )
    right = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    wrong = {"model": WRONG_MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    url = f"{gateway_url}/v1/chat/completions"
    # The route now matches only the header, which exists once the router's Deployment is available.
    wait_for("the body-based router", lambda: httpx.post(url, json=right, timeout=5).status_code == 200)
    rejected = httpx.post(url, json=wrong, timeout=5)
    assert rejected.status_code == 404
    assert "x-inference-pod" not in rejected.headers
    assert rejected.headers.get("via") == "1.1 google"
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=WRONG_MODEL, messages=[{"role": "user", "content": "Hello"}])


def test_scaling_to_zero_then_deleting_the_pool(gateway_url, kube):
    """503 while the pool has no Ready pods, 500 once the route points at a pool that is gone."""
    url = f"{gateway_url}/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}
    kube.apps.patch_namespaced_deployment(APP, "default", {"spec": {"replicas": 0}})
    no_pods = wait_for(
        "no healthy upstream", lambda: (r := httpx.post(url, json=body, timeout=5)).status_code == 503 and r
    )
    assert no_pods.text == "no healthy upstream"
    kube.custom.delete_namespaced_custom_object(
        "inference.networking.k8s.io", "v1", "default", "inferencepools", POOL
    )
    gone = wait_for(
        "fault filter abort", lambda: (r := httpx.post(url, json=body, timeout=5)).status_code == 500 and r
    )
    assert gone.text == "fault filter abort"
