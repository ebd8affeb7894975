"""Input checks shared by the GCP APIs, with GCP's rules and wording."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from aiohttp import web

from sandbox.gcp import regions
from sandbox.gcp.errors import GcpError, bad_request

_RFC1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def require_rfc1035_name(kind: str, name: object, max_length: int = 63) -> str:
    if not isinstance(name, str) or not name:
        raise bad_request(f"Invalid value for field 'resource.name': ''. The {kind} name must not be empty.")
    if len(name) > max_length or not _RFC1035.fullmatch(name):
        raise bad_request(
            f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
            f"'(?:[a-z](?:[-a-z0-9]{{0,{max_length - 2}}}[a-z0-9])?)'"
        )
    return name


def require_cidr(field_name: str, value: object) -> ipaddress.IPv4Network:
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid value for field '{field_name}': ''. The IP CIDR range must be set.")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise bad_request(
            f"Invalid value for field '{field_name}': '{value}'. Invalid IPCidrRange: {value} is not a "
            "valid IPv4 CIDR range with no host bits set."
        ) from None
    if network.prefixlen > 29:
        raise bad_request(
            f"Invalid value for field '{field_name}': '{value}'. The IP CIDR range must be /29 or larger."
        )
    return require_usable_range(field_name, network)


# GCP's prohibited IPv4 subnet ranges, for primary and secondary ranges alike
# (https://cloud.google.com/vpc/docs/subnets#restricted-ranges). Every other range is accepted: RFC
# 1918, the special ranges the page lists as valid (100.64.0.0/10, 192.0.0.0/24, 192.0.2.0/24,
# 198.18.0.0/15, 198.51.100.0/24, 203.0.113.0/24, 240.0.0.0/4, ...) and privately used public ranges.
# Google's public API ranges are prohibited too; only the Private Google Access VIPs are modelled.
# The message wording is the twin's; the shape (400 INVALID_ARGUMENT, reason "invalid") is Compute's.
_PROHIBITED_RANGES = (
    ipaddress.IPv4Network("0.0.0.0/8"),
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv4Network("169.254.0.0/16"),
    ipaddress.IPv4Network("224.0.0.0/4"),
    ipaddress.IPv4Network("255.255.255.255/32"),
    ipaddress.IPv4Network("199.36.153.4/30"),
    ipaddress.IPv4Network("199.36.153.8/30"),
)


def require_usable_range(field_name: str, network: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    for prohibited in _PROHIBITED_RANGES:
        if network.overlaps(prohibited):
            raise bad_request(
                f"Invalid value for field '{field_name}': '{network}'. The IP CIDR range {network} overlaps "
                f"the restricted range {prohibited}."
            )
    return network


def require_region(region: str) -> str:
    if not regions.is_region(region):
        raise bad_request(f"Invalid value for field 'region': '{region}'. Unknown region.")
    return region


def require_location(location: str) -> str:
    """A GKE location (region or zone); returns its region."""
    region = regions.region_of_location(location)
    if region is None:
        raise GcpError(400, f'Location "{location}" does not exist.')
    return region


def last_segment(reference: str) -> str:
    """The name in a full or partial resource URL ('.../networks/vpc' -> 'vpc')."""
    return reference.rstrip("/").rsplit("/", 1)[-1]


async def json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def injected_operation_failure(operation_type: str, target: str) -> GcpError:
    """The error an operation ends with under the "operation_error" behaviour: a quota failure."""
    return GcpError(
        403,
        f"Quota exceeded while running {operation_type} on {target} (injected by the sandbox).",
        status="RESOURCE_EXHAUSTED",
        reason="quotaExceeded",
    )


def paginate(items: list, request: web.Request, size_param: str, default_size: int, max_size: int):
    """One page of `items` and the token of the next page (None on the last), from the request's
    `<size_param>` and `pageToken` query parameters. Tokens are opaque to clients."""
    raw_size = request.query.get(size_param, str(default_size))
    try:
        size = int(raw_size)
    except ValueError:
        raise bad_request(f"Invalid value for field '{size_param}': '{raw_size}'.") from None
    if not 0 < size <= max_size:
        size = max_size if size > max_size else default_size
    token = request.query.get("pageToken", "")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:")) if token else 0
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad_request(f"Invalid value for field 'pageToken': '{token}'.") from None
    if start < 0 or start > len(items):
        raise bad_request(f"Invalid value for field 'pageToken': '{token}'.")
    end = start + size
    next_token = base64.urlsafe_b64encode(f"offset:{end}".encode()).decode() if end < len(items) else None
    return items[start:end], next_token
