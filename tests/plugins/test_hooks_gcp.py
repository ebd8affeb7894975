"""The GCP hooks against the running sandbox: creates, re-runs, 404/409 paths, operation errors, retries."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.api_core import exceptions as api_exceptions

from gke_inference.errors import explain, is_terminal
from gke_inference.hooks._errors import MissingResourceError, OperationFailedError, ResourceMismatchError
from gke_inference.hooks._operations import poll_until
from gke_inference.hooks._retry import MAX_RETRY_AFTER, is_transient, retry_after_seconds
from gke_inference.hooks.compute_network import ComputeNetworkHook, SubnetworkSpec
from gke_inference.hooks.gke import AutopilotClusterSpec, ClusterStatus, GKEClusterHook
from gke_inference.hooks.service_usage import ServiceUsageHook
from gke_inference.ownership import GCP_LABELS, NETWORK_DESCRIPTION
from tests.plugins.conftest import REGION, unique

NODE_RANGES = {"pods-range": "10.4.0.0/14", "services-range": "10.8.0.0/20"}


def node_subnet(name: str) -> SubnetworkSpec:
    return SubnetworkSpec(name, REGION, "10.0.0.0/20", NODE_RANGES)


def proxy_subnet(name: str, cidr: str = "10.129.0.0/23") -> SubnetworkSpec:
    return SubnetworkSpec(name, REGION, cidr, purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE")


def cluster_spec(name: str, network: str, subnetwork: str) -> AutopilotClusterSpec:
    return AutopilotClusterSpec(
        name, network, subnetwork, "pods-range", "services-range", "RAPID", GCP_LABELS
    )


def calls(sandbox, method: str, path_part: str) -> list[int]:
    """Statuses of the logged requests with this method whose path contains `path_part`."""
    return [e["status"] for e in sandbox.requests() if e["method"] == method and path_part in e["path"]]


@pytest.fixture
def network(project) -> tuple[ComputeNetworkHook, str]:
    hook = ComputeNetworkHook()
    name = unique("vpc")
    hook.ensure_network(name, project, description=NETWORK_DESCRIPTION)
    return hook, name


def wait_running(hook: GKEClusterHook, name: str, project: str):
    return poll_until(
        lambda: hook.get_cluster(name, project),
        lambda c: c.status != ClusterStatus.PROVISIONING,
        description=f"cluster {name}",
        timeout=20,
        poll_interval=0.1,
    )


# --- Service Usage


def test_enable_services_enables_only_what_is_disabled(sandbox, new_project):
    hook = ServiceUsageHook()
    services = ["compute.googleapis.com", "cloudresourcemanager.googleapis.com"]

    first = hook.enable_services(services, new_project)
    again = hook.enable_services(services, new_project)

    assert first == {
        "enabled": ["compute.googleapis.com"],
        "already_enabled": ["cloudresourcemanager.googleapis.com"],
    }
    assert again == {"enabled": [], "already_enabled": services}
    assert hook.is_enabled("compute.googleapis.com", new_project)
    assert len(calls(sandbox, "POST", f"/projects/{new_project}/services:batchEnable")) == 1


def test_enable_services_reports_a_failed_operation(sandbox, new_project, clean_faults):
    sandbox.faults_add(behaviour="operation_error", api="serviceusage", project=new_project)

    with pytest.raises(
        OperationFailedError, match="Enabling logging.googleapis.com failed: Quota"
    ) as failure:
        ServiceUsageHook().enable_services(["logging.googleapis.com"], new_project)

    # The sandbox fails it with RESOURCE_EXHAUSTED (429): worth a task retry, unlike a 400 or 403.
    assert failure.value.http_status == 429 and not is_terminal(failure.value)


def test_enable_services_survives_rate_limiting_and_honours_retry_after(sandbox, new_project, clean_faults):
    sandbox.faults_add(
        api="serviceusage",
        method="POST",
        path=f"{new_project}/services:batchEnable",
        status=429,
        retry_after=1,
        count=1,
    )
    started = time.monotonic()

    result = ServiceUsageHook().enable_services(["monitoring.googleapis.com"], new_project)

    assert result["enabled"] == ["monitoring.googleapis.com"]
    assert time.monotonic() - started >= 1.0
    assert calls(sandbox, "POST", f"/projects/{new_project}/services:batchEnable") == [429, 200]


# --- Compute networks and subnetworks


def test_disabled_compute_api_is_a_terminal_error_naming_the_service(new_project):
    with pytest.raises(api_exceptions.Forbidden) as failure:
        ComputeNetworkHook().find_network("any", new_project)

    assert is_terminal(failure.value)
    assert "compute.googleapis.com is disabled in the project (SERVICE_DISABLED)" in explain(failure.value)


def test_ensure_network_creates_a_custom_mode_regional_vpc_once(sandbox, project):
    hook = ComputeNetworkHook()
    name = unique("vpc")

    created = hook.ensure_network(name, project, description=NETWORK_DESCRIPTION)
    again = hook.ensure_network(name, project, description=NETWORK_DESCRIPTION)

    assert created["created"] and created["owned"] and created["self_link"].endswith(f"/networks/{name}")
    assert not again["created"] and again["owned"]
    network = hook.get_network(name, project)
    assert not network.auto_create_subnetworks
    assert network.routing_config.routing_mode == "REGIONAL"
    assert len(calls(sandbox, "POST", f"/projects/{project}/global/networks")) == 1


def test_ensure_network_reads_back_on_conflict(sandbox, project, clean_faults):
    hook = ComputeNetworkHook()
    name = unique("vpc")
    hook.create_network(name, project, description=NETWORK_DESCRIPTION)
    # The first look misses it, as if another run created it in between.
    sandbox.faults_add(api="compute", method="GET", path=f"global/networks/{name}$", status=404, count=1)

    result = hook.ensure_network(name, project, description=NETWORK_DESCRIPTION)

    assert result == {
        "name": name,
        "self_link": hook.get_network(name, project).self_link,
        "created": False,
        "owned": True,
    }
    assert calls(sandbox, "POST", f"/projects/{project}/global/networks") == [200, 409]


def test_existing_network_mode_never_creates(sandbox, project):
    hook = ComputeNetworkHook()
    name = unique("vpc")

    with pytest.raises(MissingResourceError, match="never creates"):
        hook.ensure_network(name, project, description=NETWORK_DESCRIPTION, use_existing=True)

    assert hook.find_network(name, project) is None
    assert calls(sandbox, "POST", f"/projects/{project}/global/networks") == []


def test_network_create_survives_unavailable_and_dropped_connections(sandbox, project, clean_faults):
    hook = ComputeNetworkHook()
    name = unique("vpc")
    sandbox.faults_add(api="compute", method="POST", path=f"{project}/global/networks$", status=503, count=1)
    sandbox.faults_add(api="compute", method="POST", path=f"{project}/global/networks$", drop=True, count=1)

    result = hook.ensure_network(name, project, description=NETWORK_DESCRIPTION)

    assert result["created"]
    assert hook.get_network(name, project).name == name


def test_failed_compute_operation_raises_with_its_message(sandbox, project, clean_faults):
    hook = ComputeNetworkHook()
    name = unique("vpc")
    sandbox.faults_add(behaviour="operation_error", api="compute", project=project)

    with pytest.raises(OperationFailedError, match="Compute operation .* failed: .*") as failure:
        hook.create_network(name, project, description=NETWORK_DESCRIPTION)

    assert is_terminal(failure.value)


def test_node_subnet_with_secondary_ranges_is_created_once(project, network):
    hook, network_name = network
    spec = node_subnet(unique("nodes"))

    created = hook.ensure_subnetwork(spec, network_name, project, description=NETWORK_DESCRIPTION)
    again = hook.ensure_subnetwork(spec, network_name, project, description=NETWORK_DESCRIPTION)

    assert created["created"] and created["owned"] and not again["created"]
    subnetwork = hook.get_subnetwork(spec.name, REGION, project)
    assert {r.range_name: r.ip_cidr_range for r in subnetwork.secondary_ip_ranges} == NODE_RANGES
    assert subnetwork.ip_cidr_range == "10.0.0.0/20"
    assert subnetwork.network.endswith(f"/networks/{network_name}")


def test_existing_subnet_with_other_ranges_is_refused(project, network):
    hook, network_name = network
    name = unique("nodes")
    hook.ensure_subnetwork(node_subnet(name), network_name, project, description=NETWORK_DESCRIPTION)
    different = SubnetworkSpec(name, REGION, "10.1.0.0/20", {"pods-range": "10.16.0.0/14"})

    with pytest.raises(ResourceMismatchError, match="its range is 10.0.0.0/20, not 10.1.0.0/20"):
        hook.ensure_subnetwork(different, network_name, project, description=NETWORK_DESCRIPTION)


def test_any_active_proxy_only_subnet_satisfies_the_proxy_spec(project, network):
    hook, network_name = network
    first = hook.ensure_subnetwork(
        proxy_subnet(unique("proxy")), network_name, project, description="by hand"
    )

    second = hook.ensure_subnetwork(
        proxy_subnet(unique("proxy"), "10.130.0.0/23"), network_name, project, description=NETWORK_DESCRIPTION
    )

    assert first["created"] and first["purpose"] == "REGIONAL_MANAGED_PROXY"
    # Made by someone else (another description): used, but not ours to delete.
    assert second["name"] == first["name"] and not second["created"] and not second["owned"]
    assert [s.name for s in hook.list_subnetworks(network_name, REGION, project)] == [first["name"]]


def test_subnet_of_a_missing_network_is_a_clear_error(project):
    with pytest.raises(MissingResourceError, match="does not exist"):
        ComputeNetworkHook().ensure_subnetwork(
            node_subnet(unique("nodes")), unique("vpc"), project, description=NETWORK_DESCRIPTION
        )


def test_deletes_wait_and_treat_absence_as_done(project, network):
    hook, network_name = network
    spec = node_subnet(unique("nodes"))
    hook.ensure_subnetwork(spec, network_name, project, description=NETWORK_DESCRIPTION)

    assert hook.delete_subnetwork(spec.name, REGION, project) is True
    assert hook.delete_subnetwork(spec.name, REGION, project) is False
    assert hook.delete_network(network_name, project) is True
    assert hook.delete_network(network_name, project) is False
    assert hook.find_network(network_name, project) is None


# --- GKE clusters


@pytest.fixture
def cluster_network(project, network) -> tuple[str, str, str]:
    hook, network_name = network
    subnet = unique("nodes")
    hook.ensure_subnetwork(node_subnet(subnet), network_name, project, description=NETWORK_DESCRIPTION)
    return project, network_name, subnet


def test_autopilot_cluster_is_created_once_and_exposes_its_control_plane(sandbox, cluster_network):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    spec = cluster_spec(unique("cluster"), network_name, subnet)

    created = hook.ensure_autopilot_cluster(spec, project)
    running = wait_running(hook, spec.name, project)
    again = hook.ensure_autopilot_cluster(spec, project)
    auth = hook.cluster_auth(spec.name, project)

    assert created["created"] and created["owned"] and created["operation"]
    assert spec.to_cluster().network_config.gateway_api_config.channel.name == "CHANNEL_STANDARD"
    assert not again["created"] and again["status"] == "RUNNING"
    assert running.status == ClusterStatus.RUNNING
    assert running.autopilot.enabled and dict(running.resource_labels) == GCP_LABELS
    assert running.ip_allocation_policy.cluster_secondary_range_name == "pods-range"
    assert auth.endpoint_url == f"https://{running.endpoint}"
    assert base64.b64decode(auth.ca_certificate).startswith(b"-----BEGIN CERTIFICATE-----")
    assert len(calls(sandbox, "POST", f"/projects/{project}/locations/{REGION}/clusters")) == 1


def test_existing_cluster_on_another_subnetwork_is_refused(cluster_network):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    name = unique("cluster")
    hook.ensure_autopilot_cluster(cluster_spec(name, network_name, subnet), project)

    with pytest.raises(ResourceMismatchError, match="it is on subnetwork .*, not 'elsewhere'"):
        hook.ensure_autopilot_cluster(cluster_spec(name, network_name, "elsewhere"), project)


def test_cluster_create_conflict_is_read_back(sandbox, cluster_network, clean_faults):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    spec = cluster_spec(unique("cluster"), network_name, subnet)
    hook.create_cluster(spec.to_cluster(), project)
    sandbox.faults_add(api="container", method="GET", path=f"clusters/{spec.name}$", status=404, count=1)

    result = hook.ensure_autopilot_cluster(spec, project)

    assert not result["created"] and result["owned"]
    assert calls(sandbox, "POST", f"/projects/{project}/locations/{REGION}/clusters") == [200, 409]


def test_failed_cluster_operation_is_reported_not_swallowed(sandbox, cluster_network, clean_faults):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    spec = cluster_spec(unique("cluster"), network_name, subnet)
    sandbox.faults_add(behaviour="operation_error", api="container", project=project)
    operation = hook.create_cluster(spec.to_cluster(), project)

    with pytest.raises(OperationFailedError, match=r"GKE operation .* \(CREATE_CLUSTER\) failed"):
        hook.wait_for_operation(operation, project, timeout=20, poll_interval=0.1)


def test_cluster_reads_retry_429_and_503(sandbox, cluster_network, clean_faults):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    name = unique("cluster")
    hook.ensure_autopilot_cluster(cluster_spec(name, network_name, subnet), project)
    sandbox.faults_add(api="container", method="GET", path=f"clusters/{name}$", status=429, count=1)
    sandbox.faults_add(api="container", method="GET", path=f"clusters/{name}$", status=503, count=1)

    assert hook.get_cluster(name, project).name == name
    assert calls(sandbox, "GET", f"clusters/{name}")[-3:] == [429, 503, 200]


def test_cluster_delete_waits_and_absence_is_none(cluster_network):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    name = unique("cluster")
    hook.ensure_autopilot_cluster(cluster_spec(name, network_name, subnet), project)
    wait_running(hook, name, project)

    operation = hook.delete_cluster(name, project)
    hook.wait_for_operation(operation, project, timeout=20, poll_interval=0.1)
    hook.wait_until_deleted(name, project, timeout=20, poll_interval=0.1)

    assert hook.find_cluster(name, project) is None
    assert hook.delete_cluster(name, project) is None


def test_cluster_auth_before_the_endpoint_exists_is_a_clear_error(cluster_network, slow_cluster_provisioning):
    project, network_name, subnet = cluster_network
    hook = GKEClusterHook(location=REGION)
    name = unique("cluster")
    hook.ensure_autopilot_cluster(cluster_spec(name, network_name, subnet), project)

    with pytest.raises(RuntimeError, match="no control plane endpoint yet"):
        hook.cluster_auth(name, project)


# --- the retry policy's classification (pure functions)


def test_transient_and_terminal_classification():
    from kubernetes.client.exceptions import ApiException

    assert is_transient(api_exceptions.TooManyRequests("slow down"))
    assert is_transient(api_exceptions.ServiceUnavailable("later"))
    assert is_transient(requests.exceptions.ConnectionError("reset by peer"))
    assert is_transient(ApiException(status=503))
    assert not is_transient(ApiException(status=409))
    assert not is_transient(api_exceptions.Forbidden("no"))
    assert is_terminal(api_exceptions.BadRequest("invalid range"))
    assert not is_terminal(api_exceptions.ServiceUnavailable("later"))


def test_retry_after_accepts_seconds_and_http_dates_and_is_capped():
    def rate_limited(value: str) -> api_exceptions.TooManyRequests:
        response = requests.Response()
        response.headers["Retry-After"] = value
        return api_exceptions.TooManyRequests("slow down", response=response)

    soon = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)

    assert retry_after_seconds(rate_limited("2")) == 2.0
    assert 25 <= retry_after_seconds(rate_limited(soon)) <= 30
    assert retry_after_seconds(rate_limited("86400")) == MAX_RETRY_AFTER
    assert retry_after_seconds(rate_limited("soon-ish")) is None
    assert retry_after_seconds(api_exceptions.TooManyRequests("no response")) is None


# --- endpoints: the connection decides, the code path is the same


def test_clients_use_rest_and_the_connections_endpoint(sandbox, gcp_connection):
    endpoint = sandbox.info["api_endpoint"]

    assert ServiceUsageHook().client.api_endpoint == endpoint
    assert ComputeNetworkHook().global_operations.api_endpoint == endpoint
    assert type(GKEClusterHook(location=REGION).client._transport).__name__ == "ClusterManagerRestTransport"


def test_without_an_endpoint_extra_the_clients_use_googles_endpoints(sandbox, monkeypatch):
    extra = {"key_path": sandbox.info["key_path"], "project": "some-project"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps({"conn_type": "google_cloud_platform", "extra": extra}),
    )

    assert ComputeNetworkHook().subnetworks.api_endpoint == "compute.googleapis.com"
    assert GKEClusterHook(location=REGION).client.api_endpoint == "container.googleapis.com"
    assert ServiceUsageHook().resolve_project_id(None) == "some-project"
    assert ServiceUsageHook().resolve_project_id("") == "some-project"
