"""Extra links from the GCP-side tasks to the Google Cloud console pages of what they manage.

Airflow 3 computes a task's links when the task finishes and keeps them in XCom, so the links
need no plugin registration. A task whose project is not known yet gets no link (an empty URL).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

CONSOLE = "https://console.cloud.google.com"


def console_url(path: str, project_id: str | None) -> str:
    if not project_id:
        return ""
    return f"{CONSOLE}/{quote(path)}?{urlencode({'project': project_id})}"


class ApisConsoleLink(BaseOperatorLink):
    name = "Enabled APIs"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return console_url("apis/dashboard", operator.project_id)


class NetworkConsoleLink(BaseOperatorLink):
    name = "VPC network"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        return console_url(f"networking/networks/details/{operator.network_name}", operator.project_id)


class SubnetworkConsoleLink(BaseOperatorLink):
    name = "Subnetwork"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        path = f"networking/subnetworks/details/{operator.region}/{operator.subnetwork_name}"
        return console_url(path, operator.project_id)


class ClusterConsoleLink(BaseOperatorLink):
    name = "GKE cluster"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        path = f"kubernetes/clusters/details/{operator.location}/{operator.cluster_name}/details"
        return console_url(path, operator.project_id)


class GatewayConsoleLink(BaseOperatorLink):
    """The Gateway's page under "Gateways, Services & Ingress": its address, routes and load balancer."""

    name = "Gateway"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        path = (
            f"kubernetes/gateway/{operator.location}/{operator.cluster_name}"
            f"/{operator.namespace}/{operator.gateway_name}/details"
        )
        return console_url(path, operator.project_id)
