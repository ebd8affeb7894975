"""Every route the GCP twin serves, and every field it answers with, exists in Google's discovery documents.

The documents are the ones google-api-python-client bundles; the scenario below drives each route over
raw HTTP so that the JSON is checked exactly as the sandbox wrote it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import googleapiclient
import httpx
import pytest

from sandbox.gcp.operations import OperationRunner
from sandbox.gcp.server import TOKEN_PATH, build_gcp_app
from sandbox.testing import unique_name

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
API_DOCUMENTS = {
    "compute": "compute.v1.json",
    "container": "container.v1.json",
    "serviceusage": "serviceusage.v1.json",
    "iamcredentials": "iamcredentials.v1.json",
}
REGION = "us-central1"


class Discovery:
    """The methods of the twin's APIs, findable by HTTP method and concrete path."""

    def __init__(self) -> None:
        self.methods: list[tuple[str, re.Pattern, dict, dict]] = []
        for name in API_DOCUMENTS.values():
            document = json.loads((DOCUMENTS / name).read_text())
            self._collect(document, document)

    def _collect(self, document: dict, node: dict) -> None:
        for method in node.get("methods", {}).values():
            template = "/" + document["servicePath"] + method.get("flatPath", method["path"])
            pattern = re.escape(template)
            pattern = re.sub(r"\\\{\\?\+?[A-Za-z0-9_]+\\\}", "[^/]+", pattern)
            self.methods.append((method["httpMethod"], re.compile(pattern + "$"), method, document))
        for child in node.get("resources", {}).values():
            self._collect(document, child)

    def find(self, http_method: str, path: str) -> tuple[dict, dict]:
        """The most specific method matching (its pattern with the fewest variables wins)."""
        candidates = [
            (pattern.pattern.count("[^/]+"), method, document)
            for verb, pattern, method, document in self.methods
            if verb == http_method and pattern.match(path)
        ]
        if not candidates:
            raise AssertionError(f"{http_method} {path} is not a method in the discovery documents")
        _, method, document = min(candidates, key=lambda candidate: candidate[0])
        return method, document


@pytest.fixture(scope="module")
def discovery() -> Discovery:
    return Discovery()


def _sample_path(canonical: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", canonical)


def test_every_route_is_a_discovery_method(sandbox, discovery):
    app = build_gcp_app(sandbox.sandbox, OperationRunner())
    routes = [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    ]
    assert len(routes) > 20
    for http_method, canonical in routes:
        if canonical == TOKEN_PATH:  # the OAuth endpoint is not part of these APIs
            continue
        discovery.find(http_method, _sample_path(canonical))


class ConformanceChecker:
    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery
        self.checked: set[str] = set()

    def check_response(self, http_method: str, path: str, body: dict) -> None:
        method, document = self.discovery.find(http_method, path)
        schema_name = method["response"]["$ref"]
        self._check(document, {"$ref": schema_name}, body, f"{method['id']}:")
        self.checked.add(method["id"])

    def _check(self, document: dict, schema: dict, value, where: str) -> None:
        if "$ref" in schema:
            schema = document["schemas"][schema["$ref"]]
        kind = schema.get("type")
        if kind == "any":
            return
        if kind == "object" or "properties" in schema:
            assert isinstance(value, dict), f"{where} should be an object, not {value!r}"
            self._check_object(document, schema, value, where)
        elif kind == "array":
            assert isinstance(value, list), f"{where} should be an array"
            for index, item in enumerate(value):
                self._check(document, schema["items"], item, f"{where}[{index}]")
        elif kind == "string":
            assert isinstance(value, str), f"{where} should be a string (64-bit numbers too), not {value!r}"
            if "enum" in schema:
                assert value in schema["enum"], f"{where}={value!r} is not one of {schema['enum']}"
        elif kind == "integer":
            assert isinstance(value, int) and not isinstance(value, bool), f"{where} should be an integer"
        elif kind == "boolean":
            assert isinstance(value, bool), f"{where} should be a boolean"

    def _check_object(self, document: dict, schema: dict, value: dict, where: str) -> None:
        properties = schema.get("properties")
        if properties is None:  # a map, or a google.protobuf.Any carrying "@type"
            extra = schema.get("additionalProperties", {})
            if "@type" in value:
                self._check_any(value, where)
            elif extra:
                for key, item in value.items():
                    self._check(document, extra, item, f"{where}.{key}")
            return
        for key, item in value.items():
            assert key in properties, f"{where}.{key} is not a field of {schema.get('id', 'this object')}"
            self._check(document, properties[key], item, f"{where}.{key}")

    def _check_any(self, value: dict, where: str) -> None:
        type_url = value["@type"]
        message = type_url.rsplit(".", 1)[-1]
        if type_url.startswith("type.googleapis.com/google.api.serviceusage.v1."):
            document = json.loads((DOCUMENTS / API_DOCUMENTS["serviceusage"]).read_text())
            fields = {k: v for k, v in value.items() if k != "@type"}
            self._check(document, {"$ref": message}, fields, f"{where}<{message}>")
        else:
            assert type_url == "type.googleapis.com/google.rpc.ErrorInfo", f"{where}: unexpected {type_url}"


class RawClient:
    """Plain HTTP with the sandbox's access token; every JSON answer goes through the checker."""

    def __init__(self, sandbox, checker: ConformanceChecker) -> None:
        self.project = sandbox.info["project_id"]
        self.checker = checker
        self.http = httpx.Client(
            base_url=sandbox.info["api_endpoint"],
            headers={"Authorization": f"Bearer {sandbox.info['access_token']}"},
            timeout=30,
        )

    def call(self, http_method: str, path: str, body: dict | None = None) -> dict:
        response = self.http.request(http_method, path, json=body)
        assert response.status_code == 200, f"{http_method} {path}: {response.status_code} {response.text}"
        payload = response.json()
        self.checker.check_response(http_method, path, payload)
        return payload

    def poll(self, path: str, done, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            payload = self.call("GET", path)
            if done(payload):
                return payload
            assert time.monotonic() < deadline, f"{path} did not finish"
            time.sleep(0.05)


@pytest.fixture
def raw(sandbox, discovery):
    checker = ConformanceChecker(discovery)
    client = RawClient(sandbox, checker)
    yield client
    client.http.close()


def enable_compute_and_container(raw: RawClient) -> None:
    """Enable the two APIs and wait, bounded, for the operation to be done (not a fixed sleep)."""
    operation = raw.call(
        "POST",
        f"/v1/projects/{raw.project}/services:batchEnable",
        {"serviceIds": ["compute.googleapis.com", "container.googleapis.com"]},
    )
    raw.poll("/v1/" + operation["name"], lambda op: op.get("done"))


def test_service_usage_answers_conform(raw):
    services = f"/v1/projects/{raw.project}/services"
    operation = raw.call(
        "POST",
        services + ":batchEnable",
        {"serviceIds": ["compute.googleapis.com", "container.googleapis.com"]},
    )
    raw.poll("/v1/" + operation["name"], lambda op: op["done"])
    operation = raw.call("POST", services + "/logging.googleapis.com:enable", {})
    finished = raw.poll("/v1/" + operation["name"], lambda op: op["done"])
    assert finished["response"]["service"]["state"] == "ENABLED"
    raw.call("GET", services + "/compute.googleapis.com")
    raw.call("GET", services)
    assert {"serviceusage.services.batchEnable", "serviceusage.operations.get"} <= raw.checker.checked


def test_compute_answers_conform(sandbox, clean_faults, raw):
    enable_compute_and_container(raw)
    base = f"/compute/v1/projects/{raw.project}"
    network = unique_name("vpc")
    operation = raw.call("POST", f"{base}/global/networks", {"name": network, "autoCreateSubnetworks": False})
    raw.call("GET", f"{base}/global/operations/{operation['name']}")
    raw.call("POST", f"{base}/global/operations/{operation['name']}/wait")
    subnet = unique_name("subnet")
    operation = raw.call(
        "POST",
        f"{base}/regions/{REGION}/subnetworks",
        {
            "name": subnet,
            "network": f"{base}/global/networks/{network}",
            "ipCidrRange": "10.0.0.0/20",
            "secondaryIpRanges": [{"rangeName": "pods-range", "ipCidrRange": "10.4.0.0/14"}],
        },
    )
    raw.call("POST", f"{base}/regions/{REGION}/operations/{operation['name']}/wait")
    operation = raw.call(
        "POST",
        f"{base}/regions/{REGION}/subnetworks",
        {
            "name": unique_name("proxy"),
            "network": f"{base}/global/networks/{network}",
            "ipCidrRange": "10.129.0.0/23",
            "purpose": "REGIONAL_MANAGED_PROXY",
            "role": "ACTIVE",
        },
    )
    raw.call("GET", f"{base}/regions/{REGION}/operations/{operation['name']}")
    raw.call("POST", f"{base}/regions/{REGION}/operations/{operation['name']}/wait")
    raw.call("GET", f"{base}/global/networks/{network}")
    raw.call("GET", f"{base}/global/networks")
    raw.call("GET", f"{base}/regions/{REGION}/subnetworks/{subnet}")
    raw.call("GET", f"{base}/regions/{REGION}/subnetworks")

    failing = unique_name("vpc")
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "operation_error", api="compute", resource=failing)
    operation = raw.call("POST", f"{base}/global/networks", {"name": failing, "autoCreateSubnetworks": False})
    failed = raw.call("POST", f"{base}/global/operations/{operation['name']}/wait")
    assert failed["httpErrorStatusCode"] == 403 and failed["error"]["errors"]

    operation = raw.call("DELETE", f"{base}/regions/{REGION}/subnetworks/{subnet}")
    raw.call("POST", f"{base}/regions/{REGION}/operations/{operation['name']}/wait")
    assert "compute.networks.insert" in raw.checker.checked


def test_container_answers_conform(sandbox, clean_faults, raw):
    enable_compute_and_container(raw)
    compute = f"/compute/v1/projects/{raw.project}"
    network, subnet = unique_name("vpc"), unique_name("subnet")
    operation = raw.call(
        "POST", f"{compute}/global/networks", {"name": network, "autoCreateSubnetworks": False}
    )
    raw.call("POST", f"{compute}/global/operations/{operation['name']}/wait")
    operation = raw.call(
        "POST",
        f"{compute}/regions/{REGION}/subnetworks",
        {"name": subnet, "network": f"global/networks/{network}", "ipCidrRange": "10.0.0.0/20"},
    )
    raw.call("POST", f"{compute}/regions/{REGION}/operations/{operation['name']}/wait")

    location = f"/v1/projects/{raw.project}/locations/{REGION}"
    raw.call("GET", f"{location}/serverConfig")

    def create(name: str) -> dict:
        cluster = {"name": name, "autopilot": {"enabled": True}, "network": network, "subnetwork": subnet}
        operation = raw.call("POST", f"{location}/clusters", {"cluster": cluster})
        return raw.poll(f"{location}/operations/{operation['name']}", lambda op: op["status"] == "DONE")

    cluster = unique_name("lab")
    create(cluster)
    assert raw.call("GET", f"{location}/clusters/{cluster}")["status"] == "RUNNING"
    raw.call("GET", f"{location}/clusters")

    broken = unique_name("broken")
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "cluster_error", cluster=broken)
    assert create(broken)["error"]["message"]
    assert raw.call("GET", f"{location}/clusters/{broken}")["status"] == "ERROR"

    for name in (cluster, broken):
        operation = raw.call("DELETE", f"{location}/clusters/{name}")
        raw.poll(f"{location}/operations/{operation['name']}", lambda op: op["status"] == "DONE")
    assert "container.projects.locations.clusters.create" in raw.checker.checked
