"""Compute v1 networks, subnetworks and operations through google-cloud-compute."""

from __future__ import annotations

import uuid

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from sandbox.testing import GoogleClients, enable_gke_apis, running_sandbox, unique_name

REGION = "us-central1"
DONE = compute_v1.Operation.Status.DONE


@pytest.fixture(scope="module")
def google(sandbox):
    clients = GoogleClients(sandbox.info)
    enable_gke_apis(clients)
    return clients


def create_network(google, name: str) -> compute_v1.Operation:
    network = compute_v1.Network(
        name=name,
        auto_create_subnetworks=False,
        routing_config=compute_v1.NetworkRoutingConfig(routing_mode="REGIONAL"),
    )
    operation = google.networks.insert(project=google.project, network_resource=network)
    return google.global_operations.wait(project=google.project, operation=operation.name)


def create_subnetwork(google, network: str, name: str, cidr: str, **fields) -> compute_v1.Operation:
    subnet = compute_v1.Subnetwork(
        name=name,
        network=f"projects/{google.project}/global/networks/{network}",
        ip_cidr_range=cidr,
        **fields,
    )
    operation = google.subnetworks.insert(project=google.project, region=REGION, subnetwork_resource=subnet)
    return google.region_operations.wait(project=google.project, region=REGION, operation=operation.name)


def tutorial_ranges() -> list[compute_v1.SubnetworkSecondaryRange]:
    return [
        compute_v1.SubnetworkSecondaryRange(range_name="pods-range", ip_cidr_range="10.4.0.0/14"),
        compute_v1.SubnetworkSecondaryRange(range_name="services-range", ip_cidr_range="10.8.0.0/20"),
    ]


@pytest.fixture
def network(google) -> str:
    name = unique_name("vpc")
    assert create_network(google, name).status == DONE
    return name


def test_the_tutorial_network_and_subnets(sandbox, google, network):
    node_subnet = unique_name("inference-subnet")
    proxy_subnet = unique_name("proxy-only-subnet")
    assert not sandbox.run(sandbox.sandbox.gcp.proxy_only_subnet_active, google.project, REGION, network)

    operation = create_subnetwork(
        google, network, node_subnet, "10.0.0.0/20", secondary_ip_ranges=tutorial_ranges()
    )
    assert operation.status == DONE and not operation.error.errors
    assert operation.operation_type == "insert" and operation.target_link.endswith(
        f"/subnetworks/{node_subnet}"
    )
    operation = create_subnetwork(
        google, network, proxy_subnet, "10.129.0.0/23", purpose="REGIONAL_MANAGED_PROXY", role="ACTIVE"
    )
    assert operation.status == DONE

    vpc = google.networks.get(project=google.project, network=network)
    assert vpc.auto_create_subnetworks is False
    assert vpc.routing_config.routing_mode == "REGIONAL"
    assert {link.rsplit("/", 1)[-1] for link in vpc.subnetworks} == {node_subnet, proxy_subnet}
    subnet = google.subnetworks.get(project=google.project, region=REGION, subnetwork=node_subnet)
    assert subnet.ip_cidr_range == "10.0.0.0/20" and subnet.network == vpc.self_link
    assert {(r.range_name, r.ip_cidr_range) for r in subnet.secondary_ip_ranges} == {
        ("pods-range", "10.4.0.0/14"),
        ("services-range", "10.8.0.0/20"),
    }
    proxy = google.subnetworks.get(project=google.project, region=REGION, subnetwork=proxy_subnet)
    assert (proxy.purpose, proxy.role) == ("REGIONAL_MANAGED_PROXY", "ACTIVE")
    assert sandbox.run(sandbox.sandbox.gcp.proxy_only_subnet_active, google.project, REGION, network)
    assert not sandbox.run(
        sandbox.sandbox.gcp.proxy_only_subnet_active, google.project, "europe-west1", network
    )


def test_operations_progress_and_get_returns_the_same_operation(google):
    name = unique_name("vpc")
    network = compute_v1.Network(name=name, auto_create_subnetworks=False)
    started = google.networks.insert(project=google.project, network_resource=network)
    assert started.name.startswith("operation-") and started.status != DONE
    with pytest.raises(exceptions.NotFound):
        google.networks.get(project=google.project, network=name)

    finished = google.global_operations.wait(project=google.project, operation=started.name)
    fetched = google.global_operations.get(project=google.project, operation=started.name)
    assert finished.status == fetched.status == DONE
    assert fetched.id == started.id and int(fetched.id) > 0
    assert google.networks.get(project=google.project, network=name).name == name


def test_a_retried_insert_with_the_same_request_id_gets_the_first_operation(google):
    request_id = str(uuid.uuid4())
    network = compute_v1.Network(name=unique_name("vpc"), auto_create_subnetworks=False)
    request = compute_v1.InsertNetworkRequest(
        project=google.project, network_resource=network, request_id=request_id
    )
    first = google.networks.insert_unary(request=request)
    google.global_operations.wait(project=google.project, operation=first.name)
    again = google.networks.insert_unary(request=request)
    assert again.name == first.name and again.status == DONE

    with pytest.raises(exceptions.Conflict):
        google.networks.insert_unary(
            request=compute_v1.InsertNetworkRequest(
                project=google.project, network_resource=network, request_id=str(uuid.uuid4())
            )
        )
    with pytest.raises(exceptions.BadRequest, match="requestId"):
        google.networks.insert_unary(
            request=compute_v1.InsertNetworkRequest(
                project=google.project, network_resource=network, request_id="not-a-uuid"
            )
        )


def test_listing_networks_with_a_name_filter(google, network):
    listed = google.networks.list(request={"project": google.project, "filter": f'name = "{network}"'})
    assert [item.name for item in listed] == [network]


def test_lists_are_paged_and_the_client_pager_follows_the_pages(sandbox, google, network):
    create_network(google, unique_name("vpc"))
    before = len(sandbox.requests(api="compute"))
    paged = [
        item.name for item in google.networks.list(request={"project": google.project, "max_results": 1})
    ]
    requests = len(sandbox.requests(api="compute")) - before
    assert paged == [item.name for item in google.networks.list(project=google.project)]
    assert network in paged and requests == len(paged) >= 2
    with pytest.raises(exceptions.BadRequest, match="pageToken"):
        google.networks.list(request={"project": google.project, "page_token": "not-a-token"})


def test_creating_an_existing_network_conflicts(google, network):
    with pytest.raises(exceptions.Conflict, match="already exists"):
        google.networks.insert(
            project=google.project,
            network_resource=compute_v1.Network(name=network, auto_create_subnetworks=False),
        )


def test_a_missing_network_is_not_found(google):
    with pytest.raises(exceptions.NotFound):
        google.networks.get(project=google.project, network="no-such-vpc")


@pytest.mark.parametrize(
    ("network_fields", "message"),
    [
        ({"name": "Not_RFC1035", "auto_create_subnetworks": False}, "Must be a match of regex"),
        ({"name": "a" * 64, "auto_create_subnetworks": False}, "Must be a match of regex"),
        ({"name": "auto-vpc", "auto_create_subnetworks": True}, "custom subnet mode"),
    ],
)
def test_invalid_networks_are_bad_requests(google, network_fields, message):
    with pytest.raises(exceptions.BadRequest, match=message):
        google.networks.insert(project=google.project, network_resource=compute_v1.Network(**network_fields))


def test_subnetwork_validation(google, network):
    create_subnetwork(
        google, network, unique_name("nodes"), "10.0.0.0/20", secondary_ip_ranges=tutorial_ranges()
    )

    def insert(region=REGION, network_name=network, **fields):
        subnet = compute_v1.Subnetwork(
            name=fields.pop("name", unique_name("s")),
            network=f"projects/{google.project}/global/networks/{network_name}",
            **fields,
        )
        return google.subnetworks.insert(project=google.project, region=region, subnetwork_resource=subnet)

    with pytest.raises(exceptions.BadRequest, match="conflicts with existing subnetwork"):
        insert(ip_cidr_range="10.5.0.0/16")  # inside pods-range (10.4.0.0/14)
    with pytest.raises(exceptions.BadRequest, match="conflicts with existing subnetwork"):
        insert(
            ip_cidr_range="10.20.0.0/20",
            secondary_ip_ranges=[
                compute_v1.SubnetworkSecondaryRange(range_name="overlap", ip_cidr_range="10.0.8.0/24")
            ],
        )
    with pytest.raises(exceptions.BadRequest, match="Invalid IPCidrRange"):
        insert(ip_cidr_range="10.0.0.1/20")
    with pytest.raises(exceptions.BadRequest, match="Invalid IPCidrRange"):
        insert(ip_cidr_range="10.300.0.0/20")
    with pytest.raises(exceptions.BadRequest, match="cannot be found"):
        insert(network_name="no-such-vpc", ip_cidr_range="10.30.0.0/20")
    with pytest.raises(exceptions.BadRequest, match="Unknown region"):
        insert(region="us-moon1", ip_cidr_range="10.30.0.0/20")
    with pytest.raises(exceptions.BadRequest, match="role"):
        insert(ip_cidr_range="10.129.0.0/23", purpose="REGIONAL_MANAGED_PROXY")
    with pytest.raises(exceptions.BadRequest, match="Must be a match of regex"):
        insert(name="Bad_Name", ip_cidr_range="10.30.0.0/20")


@pytest.mark.parametrize(
    "primary, secondary",
    [
        ("0.0.0.0/20", None),  # current network, RFC 1122
        ("127.0.0.0/20", None),  # loopback
        ("169.254.0.0/20", None),  # link-local
        ("224.0.0.0/20", None),  # multicast
        ("255.255.255.255/32", None),  # limited broadcast (also smaller than /29)
        ("199.36.153.0/29", None),  # restricted.googleapis.com VIP inside
        ("10.30.0.0/20", "169.254.0.0/20"),  # a secondary range is checked the same way
        ("10.30.0.0/20", "128.0.0.0/1"),  # broader than a restricted range (overlaps 224.0.0.0/4)
    ],
)
def test_subnet_ranges_gcp_prohibits_are_refused(sandbox, google, network, primary, secondary):
    """https://cloud.google.com/vpc/docs/subnets#restricted-ranges"""
    fields = {}
    if secondary:
        fields["secondary_ip_ranges"] = [
            compute_v1.SubnetworkSecondaryRange(range_name="second", ip_cidr_range=secondary)
        ]
    with pytest.raises(exceptions.BadRequest, match="restricted range|/29 or larger"):
        create_subnetwork(google, network, unique_name("s"), primary, **fields)
    inserts = [
        e for e in sandbox.requests("compute") if e["method"] == "POST" and e["path"].endswith("/subnetworks")
    ]
    assert inserts[-1]["status"] == 400


@pytest.mark.parametrize(
    "primary",
    [
        "100.64.0.0/20",  # shared address space, RFC 6598
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "198.18.0.0/20",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "240.0.0.0/20",  # class E
        "8.8.0.0/20",  # a privately used public range
    ],
)
def test_subnet_ranges_gcp_accepts_beyond_rfc_1918_are_created(google, network, primary):
    name = unique_name("s")
    create_subnetwork(google, network, name, primary)
    assert (
        google.subnetworks.get(project=google.project, region=REGION, subnetwork=name).ip_cidr_range
        == primary
    )


def test_a_proxy_only_subnet_smaller_than_26_is_refused(google, network):
    with pytest.raises(exceptions.BadRequest, match="/26 or larger"):
        create_subnetwork(
            google,
            network,
            unique_name("p"),
            "10.140.0.0/27",
            purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE",
        )
    name = unique_name("p")
    create_subnetwork(google, network, name, "10.140.0.0/26", purpose="REGIONAL_MANAGED_PROXY", role="BACKUP")
    assert (
        google.subnetworks.get(project=google.project, region=REGION, subnetwork=name).purpose
        == "REGIONAL_MANAGED_PROXY"
    )


def test_only_one_active_proxy_only_subnet_per_region(google, network):
    create_subnetwork(
        google,
        network,
        unique_name("proxy"),
        "10.129.0.0/23",
        purpose="REGIONAL_MANAGED_PROXY",
        role="ACTIVE",
    )
    with pytest.raises(exceptions.BadRequest, match="already an ACTIVE REGIONAL_MANAGED_PROXY"):
        google.subnetworks.insert(
            project=google.project,
            region=REGION,
            subnetwork_resource=compute_v1.Subnetwork(
                name=unique_name("proxy"),
                network=f"projects/{google.project}/global/networks/{network}",
                ip_cidr_range="10.131.0.0/23",
                purpose="REGIONAL_MANAGED_PROXY",
                role="ACTIVE",
            ),
        )


def test_a_subnetwork_name_is_unique_per_region(google, network):
    name = unique_name("nodes")
    create_subnetwork(google, network, name, "10.0.0.0/20")
    with pytest.raises(exceptions.Conflict):
        create_subnetwork(google, network, name, "10.1.0.0/20")


def test_deleting_a_network_needs_its_subnetworks_gone_first(google, network):
    subnet = unique_name("nodes")
    create_subnetwork(google, network, subnet, "10.0.0.0/20")
    with pytest.raises(exceptions.BadRequest, match="already being used"):
        google.networks.delete(project=google.project, network=network)

    operation = google.subnetworks.delete(project=google.project, region=REGION, subnetwork=subnet)
    assert (
        google.region_operations.wait(project=google.project, region=REGION, operation=operation.name).status
        == DONE
    )
    operation = google.networks.delete(project=google.project, network=network)
    finished = google.global_operations.wait(project=google.project, operation=operation.name)
    assert finished.status == DONE and finished.operation_type == "delete"
    with pytest.raises(exceptions.NotFound):
        google.networks.get(project=google.project, network=network)
    assert network not in {n.name for n in google.networks.list(project=google.project)}


def test_an_operation_that_fails_ends_done_with_an_error(sandbox, clean_faults, google):
    name = unique_name("vpc")
    sandbox.run(sandbox.sandbox.faults.add_behaviour, "operation_error", api="compute", resource=name)
    operation = create_network(google, name)
    assert operation.status == DONE
    assert operation.http_error_status_code == 403
    assert operation.error.errors[0].code == "QUOTA_EXCEEDED"
    with pytest.raises(exceptions.NotFound):
        google.networks.get(project=google.project, network=name)


def test_compute_calls_need_the_compute_api_enabled():
    with running_sandbox(profile="instant") as fresh:
        google = GoogleClients(fresh.info)
        with pytest.raises(exceptions.Forbidden, match="Compute Engine API has not been used") as raised:
            google.networks.list(project=google.project)
        assert raised.value.reason == "SERVICE_DISABLED"
        enable_gke_apis(google)
        assert list(google.networks.list(project=google.project)) == []
