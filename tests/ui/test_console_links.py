"""The extra links' URLs: the console pages an operator opens from a task (no Airflow needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gke_inference.links import (
    ClusterConsoleLink,
    GatewayConsoleLink,
    NetworkConsoleLink,
    SubnetworkConsoleLink,
)

CONSOLE = "https://console.cloud.google.com"


def operator(**fields) -> SimpleNamespace:
    defaults = {
        "project_id": "my-project",
        "location": "us-central1",
        "region": "us-central1",
        "cluster_name": "inference-gateway-lab",
        "namespace": "default",
        "gateway_name": "inference-gateway",
        "network_name": "inference-vpc",
        "subnetwork_name": "proxy-only-subnet",
    }
    return SimpleNamespace(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("link", "page"),
    [
        (ClusterConsoleLink(), "kubernetes/clusters/details/us-central1/inference-gateway-lab/details"),
        (
            GatewayConsoleLink(),
            "kubernetes/gateway/us-central1/inference-gateway-lab/default/inference-gateway/details",
        ),
        (NetworkConsoleLink(), "networking/networks/details/inference-vpc"),
        (SubnetworkConsoleLink(), "networking/subnetworks/details/us-central1/proxy-only-subnet"),
    ],
)
def test_links_open_the_resource_page_in_its_project(link, page):
    assert link.get_link(operator(), ti_key=None) == f"{CONSOLE}/{page}?project=my-project"


@pytest.mark.parametrize("project_id", [None, ""])
def test_no_link_while_the_project_is_unknown(project_id):
    assert GatewayConsoleLink().get_link(operator(project_id=project_id), ti_key=None) == ""


def test_names_are_quoted_into_the_path():
    url = GatewayConsoleLink().get_link(operator(namespace="team a"), ti_key=None)
    assert "/team%20a/" in url
