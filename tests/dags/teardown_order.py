"""Teardown order read from the twin's request log timestamps (not from the order tasks were listed)."""

from __future__ import annotations


def assert_teardown_order(
    entries: list[dict], *, cluster_name: str, subnet_names: set[str], network_name: str, workloads: bool
) -> None:
    """Kubernetes deletes (Gateway among them) end before the cluster DELETE, which comes before every
    subnetwork DELETE, which all come before the VPC DELETE. Refused deletes (4xx/5xx) do not count."""
    deletes = [
        e for e in entries if e["method"] == "DELETE" and e["status"] is not None and e["status"] < 400
    ]

    def times(api: str, matches) -> list[float]:
        return [e["ts"] for e in deletes if e["api"] == api and matches(e["path"])]

    kube = times("kube", lambda path: True)
    gateways = times("kube", lambda path: "/gateways/" in path)
    cluster = times("container", lambda path: path.endswith(f"/clusters/{cluster_name}"))
    subnets = times(
        "compute", lambda path: "/subnetworks/" in path and path.rsplit("/", 1)[-1] in subnet_names
    )
    network = times("compute", lambda path: path.endswith(f"/global/networks/{network_name}"))

    assert (len(cluster), len(subnets), len(network)) == (1, len(subnet_names), 1), deletes
    if workloads:
        assert gateways, "the Gateway was deleted"
        assert max(kube) < cluster[0], "every Kubernetes delete came before the cluster's"
    assert cluster[0] < min(subnets), "the cluster went before its subnets"
    assert max(subnets) < network[0], "the subnets went before the VPC"
