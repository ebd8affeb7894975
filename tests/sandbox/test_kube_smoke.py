"""First contact: typed client reads, create, 401 without a valid token."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException


def test_default_namespaces_exist(api):
    names = {ns.metadata.name for ns in k8s.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_version_reports_the_cluster_version(api):
    info = k8s.VersionApi(api).get_code()
    assert info.git_version == "v1.34.1-gke.1000000"
    assert (info.major, info.minor) == ("1", "34")


@pytest.mark.parametrize("token", ["", "not-a-minted-token"])
def test_requests_without_a_minted_token_are_unauthorized(kube, token):
    with kube.api_client(token=token) as api_client, pytest.raises(ApiException) as raised:
        k8s.CoreV1Api(api_client).list_namespace()
    assert raised.value.status == 401
