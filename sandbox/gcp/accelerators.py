"""Compute Engine v1 `acceleratorTypes`: which GPU types each zone of the twin's regions offers.

Shapes follow the AcceleratorType, AcceleratorTypeList and AcceleratorTypeAggregatedList schemas
of the Compute v1 discovery document (googleapiclient/discovery_cache/documents/compute.v1.json).
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from aiohttp import web

from sandbox.gcp import regions, validation
from sandbox.gcp.errors import bad_request, not_found
from sandbox.gcp.listing import SELF_LINK_BASE

# Description and maximumCardsPerInstance of each accelerator type, as Compute lists them
# (`gcloud compute accelerator-types list` / `describe`). Descriptions as in a real listing
# (github.com/jlewi notes, us-west1, 2024-03); the maximum is the largest machine of the type:
# https://cloud.google.com/compute/docs/gpus (g2-standard-96: 8 L4; a2-megagpu-16g: 16 A100 40GB;
# a2-ultragpu-8g: 8 A100 80GB; a3-highgpu-8g: 8 H100; a3-ultragpu-8g: 8 H200; N1: 4 T4/P100).
ACCELERATOR_TYPES: dict[str, tuple[str, int]] = {
    "nvidia-l4": ("NVIDIA L4", 8),
    "nvidia-l4-vws": ("NVIDIA L4 Virtual Workstation", 8),
    "nvidia-tesla-a100": ("NVIDIA A100 40GB", 16),
    "nvidia-a100-80gb": ("NVIDIA A100 80GB", 8),
    "nvidia-h100-80gb": ("NVIDIA H100 80GB", 8),
    "nvidia-h200-141gb": ("NVIDIA H200 141GB", 8),
    "nvidia-tesla-t4": ("NVIDIA T4", 4),
    "nvidia-tesla-t4-vws": ("NVIDIA Tesla T4 Virtual Workstation", 4),
    "nvidia-tesla-p100": ("NVIDIA Tesla P100", 4),
    "nvidia-tesla-p100-vws": ("NVIDIA Tesla P100 Virtual Workstation", 4),
    "nvidia-tesla-v100": ("NVIDIA V100", 8),
}

# The GPU types each zone offers ("GPU availability by regions and zones":
# https://cloud.google.com/compute/docs/gpus/gpu-regions-zones). Not exhaustive: a region missing
# here offers no GPU in the twin (true of southamerica-west1, which has no GPU zone), and a listed
# zone lists only the types below (the real zone may offer more, e.g. older N1 GPUs).
# us-west1 is a real `gcloud compute accelerator-types list` answer of 2024-03 (less the K80,
# retired since); the europe-west3 split (L4 in -a/-b, H100 in -c, no A100) as observed on live
# projects in 2025. nvidia-h200-141gb (A3 Ultra, mostly by reservation) is left out: the twin offers it nowhere.
ZONE_ACCELERATORS: dict[str, tuple[str, ...]] = {
    "us-central1-a": (
        "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-l4", "nvidia-tesla-a100", "nvidia-tesla-t4",
    ),
    "us-central1-b": ("nvidia-h100-80gb", "nvidia-l4", "nvidia-tesla-a100", "nvidia-tesla-t4"),
    "us-central1-c": (
        "nvidia-a100-80gb", "nvidia-h100-80gb", "nvidia-l4", "nvidia-tesla-a100", "nvidia-tesla-t4",
    ),
    "us-central1-f": ("nvidia-tesla-a100", "nvidia-tesla-t4"),
    "us-west1-a": (
        "nvidia-h100-80gb", "nvidia-l4", "nvidia-l4-vws", "nvidia-tesla-p100", "nvidia-tesla-p100-vws",
        "nvidia-tesla-t4", "nvidia-tesla-t4-vws", "nvidia-tesla-v100",
    ),
    "us-west1-b": (
        "nvidia-l4", "nvidia-l4-vws", "nvidia-tesla-a100", "nvidia-tesla-p100", "nvidia-tesla-p100-vws",
        "nvidia-tesla-t4", "nvidia-tesla-t4-vws", "nvidia-tesla-v100",
    ),
    "us-west1-c": ("nvidia-l4", "nvidia-l4-vws"),
    "europe-west4-a": ("nvidia-l4", "nvidia-tesla-a100", "nvidia-tesla-t4"),
    "europe-west4-b": ("nvidia-l4", "nvidia-tesla-a100", "nvidia-tesla-t4"),
    "europe-west4-c": ("nvidia-l4", "nvidia-tesla-t4"),
    "europe-west3-a": ("nvidia-l4",),
    "europe-west3-b": ("nvidia-l4",),
    "europe-west3-c": ("nvidia-h100-80gb",),
}  # fmt: skip

# Accelerator types report the Unix epoch in Pacific time as creationTimestamp (see the Compute
# answers quoted in kubernetes/autoscaler cluster-autoscaler/cloudprovider/gce tests).
_CREATION_TIMESTAMP = "1969-12-31T16:00:00.000-08:00"


def zones_offering(region: str, accelerator: str) -> list[str]:
    """The zones of `region` whose Compute `acceleratorTypes` list `accelerator` (sorted)."""
    if not regions.is_region(region):
        return []
    return [zone for zone in regions.zones_of(region) if accelerator in ZONE_ACCELERATORS.get(zone, ())]


def accelerator_type(project: str, zone: str, name: str) -> dict:
    description, maximum_cards = ACCELERATOR_TYPES[name]
    zone_link = f"{SELF_LINK_BASE}projects/{project}/zones/{zone}"
    return {
        "kind": "compute#acceleratorType",
        "id": str(zlib.crc32(f"{zone}/{name}".encode())),
        "creationTimestamp": _CREATION_TIMESTAMP,
        "name": name,
        "description": description,
        "zone": zone_link,
        "selfLink": f"{zone_link}/acceleratorTypes/{name}",
        "maximumCardsPerInstance": maximum_cards,
    }


def _types_in_zone(project: str, zone: str) -> list[dict]:
    return [accelerator_type(project, zone, name) for name in sorted(ZONE_ACCELERATORS.get(zone, ()))]


def _all_zones() -> list[str]:
    return sorted(zone for region in regions.ZONE_SUFFIXES_BY_REGION for zone in regions.zones_of(region))


class AcceleratorTypesApi:
    """GET only: list and get per zone, and aggregatedList. The routes sit on the Compute app, so
    authentication, faults and Compute's error shape apply as to every Compute call."""

    def __init__(self, compute: Any) -> None:
        self._compute = compute

    def routes(self) -> list[web.RouteDef]:
        project = "/compute/v1/projects/{project}"
        zonal = project + "/zones/{zone}/acceleratorTypes"
        return [
            web.get(zonal, self.list_in_zone),
            web.get(zonal + "/{name}", self.get_in_zone),
            web.get(project + "/aggregated/acceleratorTypes", self.aggregated_list),
        ]

    async def list_in_zone(self, request: web.Request) -> web.Response:
        project, zone = self._project_and_zone(request)
        items = _matching(_types_in_zone(project, zone), request.query.get("filter", ""))
        page, next_token = _page(items, request)
        list_id = f"projects/{project}/zones/{zone}/acceleratorTypes"
        body: dict = {
            "kind": "compute#acceleratorTypeList",
            "id": list_id,
            "selfLink": SELF_LINK_BASE + list_id,
        }
        if page:
            body["items"] = page
        if next_token:
            body["nextPageToken"] = next_token
        return web.json_response(body)

    async def get_in_zone(self, request: web.Request) -> web.Response:
        project, zone = self._project_and_zone(request)
        name = request.match_info["name"]
        if name not in ZONE_ACCELERATORS.get(zone, ()):
            raise not_found(
                f"The resource 'projects/{project}/zones/{zone}/acceleratorTypes/{name}' was not found"
            )
        return web.json_response(accelerator_type(project, zone, name))

    async def aggregated_list(self, request: web.Request) -> web.Response:
        """Items keyed "zones/Z"; a zone with nothing on this page carries Compute's NO_RESULTS_ON_PAGE
        warning instead (the shape of AcceleratorTypesScopedList in the discovery document)."""
        project = self._compute._project(request)
        expression = request.query.get("filter", "")
        everything = [
            item for zone in _all_zones() for item in _matching(_types_in_zone(project, zone), expression)
        ]
        page, next_token = _page(everything, request)
        list_id = f"projects/{project}/aggregated/acceleratorTypes"
        body: dict = {
            "kind": "compute#acceleratorTypeAggregatedList",
            "id": list_id,
            "items": {f"zones/{zone}": _scoped(zone, page) for zone in _all_zones()},
            "selfLink": SELF_LINK_BASE + list_id,
        }
        if next_token:
            body["nextPageToken"] = next_token
        return web.json_response(body)

    def _project_and_zone(self, request: web.Request) -> tuple[str, str]:
        project = self._compute._project(request)
        zone = request.match_info["zone"]
        if regions.region_of_location(zone) in (None, zone):
            raise not_found(f"The resource 'projects/{project}/zones/{zone}' was not found")
        return project, zone


def _scoped(zone: str, page: list[dict]) -> dict:
    in_zone = [item for item in page if item["zone"].endswith(f"/zones/{zone}")]
    if in_zone:
        return {"acceleratorTypes": in_zone}
    scope = f"zones/{zone}"
    return {
        "warning": {
            "code": "NO_RESULTS_ON_PAGE",
            "message": f"There are no results for scope '{scope}' on this page.",
            "data": [{"key": "scope", "value": scope}],
        }
    }


def _page(items: list[dict], request: web.Request) -> tuple[list[dict], str | None]:
    return validation.paginate(items, request, "maxResults", default_size=500, max_size=500)


# Compute list filters (the `filter` parameter in compute.v1.json): either one or more
# parenthesized `field eq|ne literal` terms whose literal is an RE2 regular expression matching
# the whole field (what gcloud sends, e.g. `(zone eq ".*\b(us-west1-a)\b.*")`), or AIP-160
# `field = value` / `field != value` terms. Terms are ANDed. Fields: top-level string/int fields.
_TERM = re.compile(r"""\(?\s*([A-Za-z]+)\s*(eq|ne|=|!=)\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s()]+)\s*\)?""")


def _matching(items: list[dict], expression: str) -> list[dict]:
    terms = _parse_filter(expression)
    return [item for item in items if all(_term_holds(item, *term) for term in terms)]


def _parse_filter(expression: str) -> list[tuple[str, str, str]]:
    expression = expression.strip()
    terms, position = [], 0
    while position < len(expression):
        match = _TERM.match(expression, position)
        if match is None:
            raise bad_request(f"Invalid list filter expression '{expression}'.")
        field, operator, literal = match.groups()
        if literal[:1] in "\"'" and literal[-1:] == literal[:1] and len(literal) > 1:
            literal = literal[1:-1]
        terms.append((field, operator, literal))
        position = match.end()
        while position < len(expression) and expression[position] == " ":
            position += 1
        if expression.startswith("AND ", position):
            position += 4
    return terms


def _term_holds(item: dict, field: str, operator: str, literal: str) -> bool:
    if field not in item:
        raise bad_request(f"Invalid list filter expression: unknown field '{field}'.")
    value = str(item[field])
    if operator in ("eq", "ne"):
        try:
            matched = re.fullmatch(literal, value) is not None
        except re.error:
            raise bad_request(f"Invalid regular expression '{literal}' in list filter.") from None
        return matched == (operator == "eq")
    return (value == literal) == (operator == "=")
