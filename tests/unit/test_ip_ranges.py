"""GCP's rules for subnet primary and secondary IPv4 ranges
(https://cloud.google.com/vpc/docs/subnets#valid-ranges, #restricted-ranges), as plan_run applies
them: every valid range beyond RFC 1918 passes, every prohibited range (matched, inside or around)
is refused, before anything is created."""

from __future__ import annotations

import ipaddress

import pytest
from airflow.sdk.definitions.param import ParamsDict

from gke_inference.params import build_params
from gke_inference.validation import InvalidParams, subnet_range_problem, validate_params


def resolved(**overrides) -> dict:
    params = ParamsDict(build_params())
    for key, value in overrides.items():
        params[key] = value
    return params.validate()


VALID_BEYOND_RFC_1918 = [
    ("pods_range", "100.64.0.0/14"),  # shared address space, RFC 6598
    ("services_range", "192.0.0.0/24"),  # IETF protocol assignments, RFC 6890
    ("services_range", "192.0.2.0/24"),  # TEST-NET-1, RFC 5737
    ("pods_range", "198.18.0.0/15"),  # benchmarking, RFC 2544
    ("services_range", "198.51.100.0/24"),  # TEST-NET-2
    ("services_range", "203.0.113.0/24"),  # TEST-NET-3
    ("pods_range", "240.0.0.0/14"),  # class E
    ("subnet_range", "8.8.0.0/20"),  # a privately used public range
    ("pods_range", "34.0.0.0/14"),  # a privately used public range
    ("proxy_subnet_range", "172.31.254.0/23"),  # RFC 1918, the top of 172.16.0.0/12
]


@pytest.mark.parametrize("key, value", VALID_BEYOND_RFC_1918)
def test_ranges_gcp_accepts_pass(key, value):
    validate_params(resolved(**{key: value}))


PROHIBITED = [
    ("subnet_range", "0.0.0.0/20", "current network"),
    ("subnet_range", "127.0.0.0/20", "loopback"),
    ("pods_range", "169.254.0.0/16", "link-local"),
    ("services_range", "169.254.16.0/24", "link-local"),  # inside a prohibited range
    ("pods_range", "168.0.0.0/6", "link-local"),  # around a prohibited range
    ("pods_range", "224.0.0.0/14", "multicast"),
    ("services_range", "239.255.255.0/27", "multicast"),
    ("pods_range", "255.248.0.0/13", "limited broadcast"),
    ("services_range", "199.36.153.0/27", "restricted.googleapis.com"),
]


@pytest.mark.parametrize("key, value, title", PROHIBITED)
def test_prohibited_ranges_are_refused_naming_why(key, value, title):
    with pytest.raises(InvalidParams, match=f"{key}: {value} overlaps .*{title}.*GCP prohibits in subnets"):
        validate_params(resolved(**{key: value}))


def test_the_message_no_longer_claims_rfc_1918():
    with pytest.raises(InvalidParams) as refused:
        validate_params(resolved(subnet_range="127.0.0.0/20"))
    assert "RFC 1918" not in str(refused.value)
    assert "https://cloud.google.com/vpc/docs/subnets#restricted-ranges" in str(refused.value)


@pytest.mark.parametrize(
    "value, refused",
    [
        ("1.0.0.0/8", False),
        ("0.255.255.248/29", True),
        ("126.255.255.248/29", False),
        ("128.0.0.0/29", False),
        ("169.253.255.248/29", False),
        ("169.255.0.0/29", False),
        ("223.255.255.248/29", False),
        ("240.0.0.0/29", False),
        ("255.255.255.248/29", True),
    ],
)
def test_the_edges_of_the_prohibited_ranges(value, refused):
    assert (subnet_range_problem(ipaddress.IPv4Network(value)) is not None) is refused
