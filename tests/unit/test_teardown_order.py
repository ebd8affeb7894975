"""The teardown-order check fails on each order GKE and Compute would refuse or that leaks."""

from __future__ import annotations

import pytest

from tests.dags.teardown_order import assert_teardown_order

NAMES = {"cluster_name": "lab", "subnet_names": {"node", "proxy"}, "network_name": "vpc", "workloads": True}
GOOD = [
    ("kube", "/apis/apps/v1/namespaces/default/deployments/vllm"),
    ("kube", "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/inference-gateway"),
    ("container", "/v1/projects/p/locations/us-central1/clusters/lab"),
    ("compute", "/compute/v1/projects/p/regions/us-central1/subnetworks/proxy"),
    ("compute", "/compute/v1/projects/p/regions/us-central1/subnetworks/node"),
    ("compute", "/compute/v1/projects/p/global/networks/vpc"),
]


def log(order: list[tuple[str, str]], status: int = 200) -> list[dict]:
    return [
        {"api": api, "method": "DELETE", "path": path, "query": "", "status": status, "ts": 100.0 + i}
        for i, (api, path) in enumerate(order)
    ]


def test_the_tutorials_order_passes():
    assert_teardown_order(log(GOOD), **NAMES)


@pytest.mark.parametrize(
    "order",
    [
        [GOOD[0], GOOD[2], GOOD[1], *GOOD[3:]],  # the Gateway after the cluster
        [GOOD[0], GOOD[1], GOOD[3], GOOD[2], *GOOD[4:]],  # a subnet before the cluster
        [*GOOD[:4], GOOD[5], GOOD[4]],  # the VPC before a subnet
        [GOOD[0], *GOOD[2:]],  # no Gateway delete at all
        GOOD[:5],  # no VPC delete
    ],
    ids=["gateway-after-cluster", "subnet-before-cluster", "vpc-before-subnet", "no-gateway", "no-vpc"],
)
def test_a_wrong_or_missing_step_fails(order):
    with pytest.raises(AssertionError):
        assert_teardown_order(log(order), **NAMES)


def test_a_refused_delete_does_not_count_as_done():
    with pytest.raises(AssertionError):
        assert_teardown_order([*log(GOOD[:5]), *log([GOOD[5]], status=400)], **NAMES)
