"""The tutorial's gcloud commands (sections 1.2, 1.3 and 2.1) run unchanged against the sandbox."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from sandbox.testing import unique_name
from tests._tools import needs_tools

pytestmark = needs_tools("gcloud")
REGION = "us-central1"
TUTORIAL_SERVICES = [
    "compute.googleapis.com",
    "container.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "artifactregistry.googleapis.com",
    "networkservices.googleapis.com",
    "servicenetworking.googleapis.com",
    "monitoring.googleapis.com",
    "logging.googleapis.com",
]


@pytest.fixture(scope="module")
def gcloud(sandbox, tmp_path_factory):
    """Run gcloud with a private configuration pointing every API at the sandbox."""
    config_dir = tmp_path_factory.mktemp("gcloud-config")
    token_file = config_dir / "access-token"
    token_file.write_text(sandbox.info["access_token"])
    token_file.chmod(0o600)
    endpoint = sandbox.info["api_endpoint"]
    environment = {
        **os.environ,
        "CLOUDSDK_CONFIG": str(config_dir),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }

    def run(*arguments: str) -> str:
        completed = subprocess.run(
            ["gcloud", *arguments], env=environment, capture_output=True, text=True, timeout=120, check=False
        )
        assert completed.returncode == 0, f"gcloud {' '.join(arguments)} failed:\n{completed.stderr}"
        return completed.stdout

    # Written directly rather than with `gcloud config set`, which costs a second per property.
    (config_dir / "active_config").write_text("default")
    (config_dir / "configurations").mkdir()
    (config_dir / "configurations" / "config_default").write_text(
        f"""[auth]
disable_credentials = false
access_token_file = {token_file}

[api_endpoint_overrides]
compute = {endpoint}/compute/v1/
container = {endpoint}/
serviceusage = {endpoint}/

[core]
project = {sandbox.info["project_id"]}
"""
    )
    assert run("config", "get-value", "api_endpoint_overrides/container").strip() == f"{endpoint}/"
    return run


def test_the_tutorial_commands_build_a_running_cluster(sandbox, gcloud):
    project = sandbox.info["project_id"]
    network, subnet, proxy_subnet, cluster = (
        unique_name("inference-vpc"),
        unique_name("inference-subnet"),
        unique_name("proxy-only-subnet"),
        unique_name("inference-lab"),
    )
    # 1.2
    gcloud("services", "enable", *TUTORIAL_SERVICES)
    # 1.3
    gcloud(
        "compute",
        "networks",
        "create",
        network,
        f"--project={project}",
        "--subnet-mode=custom",
        "--bgp-routing-mode=regional",
    )
    gcloud(
        "compute",
        "networks",
        "subnets",
        "create",
        subnet,
        f"--project={project}",
        f"--network={network}",
        f"--region={REGION}",
        "--range=10.0.0.0/20",
        "--secondary-range=pods-range=10.4.0.0/14,services-range=10.8.0.0/20",
    )
    gcloud(
        "compute",
        "networks",
        "subnets",
        "create",
        proxy_subnet,
        f"--project={project}",
        "--purpose=REGIONAL_MANAGED_PROXY",
        "--role=ACTIVE",
        f"--region={REGION}",
        f"--network={network}",
        "--range=10.129.0.0/23",
    )
    # 2.1
    gcloud(
        "container",
        "clusters",
        "create-auto",
        cluster,
        f"--project={project}",
        f"--region={REGION}",
        f"--network={network}",
        f"--subnetwork={subnet}",
        "--cluster-secondary-range-name=pods-range",
        "--services-secondary-range-name=services-range",
        "--release-channel=rapid",
        "--async",
    )

    deadline = time.monotonic() + 30
    status = ""
    while status != "RUNNING" and time.monotonic() < deadline:
        status = gcloud(
            "container", "clusters", "describe", cluster, f"--region={REGION}", "--format=value(status)"
        ).strip()
    assert status == "RUNNING"

    assert sandbox.run(sandbox.sandbox.gcp.proxy_only_subnet_active, project, REGION, network)
    described = gcloud(
        "compute",
        "networks",
        "subnets",
        "describe",
        subnet,
        f"--region={REGION}",
        "--format=value(secondaryIpRanges[].rangeName)",
    )
    assert "pods-range" in described and "services-range" in described
    gcloud("container", "clusters", "delete", cluster, f"--region={REGION}", "--quiet")
    assert f"projects/{project}/locations/{REGION}/clusters/{cluster}" not in sandbox.sandbox.clusters


def test_gcloud_reports_a_bad_region_as_google_would(sandbox, gcloud):
    with pytest.raises(AssertionError, match="Unknown region"):
        gcloud(
            "compute",
            "networks",
            "subnets",
            "create",
            unique_name("subnet"),
            "--network=whatever",
            "--region=us-moon1",
            "--range=10.0.0.0/20",
        )
