"""Compute's self links and list answers (name filter, pages), shared by compute.py, loadbalancers.py
and accelerators.py."""

from __future__ import annotations

import re

from aiohttp import web

from sandbox.gcp import validation
from sandbox.gcp.errors import bad_request

SELF_LINK_BASE = "https://www.googleapis.com/compute/v1/"
_NAME_FILTER = re.compile(r'\(?\s*name\s*(?:=|eq)\s*"?([a-z0-9-]+)"?\s*\)?')


def _filtered(items: list[dict], request: web.Request) -> list[dict]:
    expression = request.query.get("filter", "").strip()
    if not expression:
        return items
    match = _NAME_FILTER.fullmatch(expression)
    if match is None:
        raise bad_request(
            f'Invalid list filter expression {expression!r}: the sandbox supports name = "<name>".'
        )
    return [item for item in items if item["name"] == match.group(1)]


def list_json(kind: str, list_id: str, items: list[dict], request: web.Request) -> dict:
    page, next_token = validation.paginate(
        _filtered(items, request), request, "maxResults", default_size=500, max_size=500
    )
    body: dict = {"kind": kind, "id": list_id, "selfLink": SELF_LINK_BASE + list_id}
    if page:
        body["items"] = page
    if next_token:
        body["nextPageToken"] = next_token
    return body
