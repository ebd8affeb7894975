"""Server-side apply, delete and reads against a GKE cluster's Kubernetes API.

The provider's Kubernetes operators only create (a rerun fails with 409), so every manifest goes
through ``DynamicClient.server_side_apply`` under one field manager with ``force_conflicts``. The
cluster is reached the way the Google provider's GKE operators do it: endpoint and CA from the
Container API, a bearer token from the GCP connection's credentials (refreshed by google-auth), no
kubeconfig and no gcloud.

Access tokens live one hour and a task or a wait can take longer, so the token is refreshed before
any request once google-auth counts it expired, and once more when the cluster answers 401 anyway
(a token revoked, or clocks apart); a second 401 with a fresh token means the key itself is refused.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, TypeVar

from airflow.sdk import BaseHook
from google.auth.transport.requests import Request as GoogleAuthRequest
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.config.kube_config import FileOrData
from kubernetes.dynamic import DynamicClient, Resource
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from gke_inference.cluster_target import DEFAULT_GCP_CONN_ID, ClusterTarget
from gke_inference.hooks._base import CredentialsRefusedError, credentials_refused, is_refused_credential
from gke_inference.hooks._retry import DEFAULT_RETRY, describe_error
from gke_inference.hooks.gke import GKEClusterHook
from gke_inference.kube_objects import condition_status, format_label_selector, object_ref
from gke_inference.ownership import DEFAULT_OWNER, Owner

FIELD_MANAGER = "airflow-gke-inference-gateway"
CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_POLL_INTERVAL = 1.0

T = TypeVar("T")
ApplyAction = Literal["created", "updated", "unchanged"]
DeleteAction = Literal["deleted", "absent", "not_owned"]


class KubernetesApplyError(RuntimeError):
    """The API server refused an object; carries only status and reason, never the object."""

    def __init__(self, action: str, ref: str, exc: BaseException, http_status: int | None = None) -> None:
        super().__init__(f"{action} {ref} failed: {describe_error(exc)}")
        self.http_status = http_status


@dataclass(frozen=True)
class ApplyResult:
    ref: str
    action: ApplyAction


@dataclass(frozen=True)
class DeleteResult:
    ref: str
    action: DeleteAction


class ClusterKubernetesHook(BaseHook):
    """Kubernetes API access to one GKE cluster, authenticated through a GCP connection.

    :param cluster_name: the GKE cluster.
    :param location: its region (or zone).
    :param project_id: its project; None means the connection's project.
    :param gcp_conn_id: the Airflow connection holding the GCP credentials (and optional api_endpoint).
    :param impersonation_chain: a service account (or chain) to impersonate, for both APIs.
    """

    def __init__(
        self,
        *,
        cluster_name: str,
        location: str,
        project_id: str | None = None,
        gcp_conn_id: str = DEFAULT_GCP_CONN_ID,
        impersonation_chain: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.target = ClusterTarget(cluster_name, location, project_id, gcp_conn_id, impersonation_chain)
        self.cluster_name = cluster_name
        self.project_id = project_id
        self.gcp_conn_id = gcp_conn_id
        self._token_refused = False

    @cached_property
    def gke_hook(self) -> GKEClusterHook:
        return self.target.gke_hook()

    @cached_property
    def request_timeout(self) -> float:
        """Seconds one Kubernetes API request may take: the GCP connection's ``request_timeout``."""
        return self.gke_hook.request_timeout

    def get_conn(self) -> ApiClient:
        url, ca_certificate = self.gke_hook.cluster_auth(self.cluster_name, project_id=self.project_id)
        credentials = self.gke_hook.get_credentials()
        # Tokens are fetched bounded and retried (google-auth alone waits up to 120 s, no retry), and
        # refreshed before every request once expired or refused, so hour-long tasks keep working.
        token_request = functools.partial(GoogleAuthRequest(), timeout=self.request_timeout)

        def refresh_token(configuration: Configuration) -> None:
            if self._token_refused or credentials.token is None or credentials.expired:
                try:
                    DEFAULT_RETRY(credentials.refresh)(token_request)
                except Exception as exc:
                    if is_refused_credential(exc):
                        raise credentials_refused(
                            self.gcp_conn_id, "the token endpoint", exc, credentials
                        ) from None
                    raise
                self._token_refused = False
            configuration.api_key = {"BearerToken": credentials.token}

        # The provider's GKEClusterConnection does the same, but importing it loads kubernetes_asyncio
        # (seconds per task) and it files the token under the pre-36 "authorization" key.
        configuration = Configuration(host=url)
        configuration.ssl_ca_cert = FileOrData(
            {"certificate-authority-data": ca_certificate}, file_key_name="certificate-authority"
        ).as_file()
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.refresh_api_key_hook = refresh_token
        refresh_token(configuration)
        return BoundedApiClient(configuration, self.request_timeout)

    # A polling trigger retries by polling again, and needs a failed poll back soon (to look at what
    # vanished): it sets a shorter budget (triggers.kubernetes).
    retry_policy = DEFAULT_RETRY

    def _call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``function`` under the retry policy; a 401 gets one fresh token and one more try."""
        try:
            return self.retry_policy(function)(*args, **kwargs)
        except ApiException as exc:
            if exc.status != 401:
                raise
        self.log.info("The cluster refused the access token (HTTP 401); fetching a new one")
        self._token_refused = True
        try:
            return self.retry_policy(function)(*args, **kwargs)
        except ApiException as exc:
            if exc.status != 401:
                raise
            where = f"the Kubernetes API of cluster {self.cluster_name!r}"
            raise CredentialsRefusedError(self.gcp_conn_id, where, "HTTP 401 with a fresh token") from None

    @cached_property
    def dynamic_client(self) -> DynamicClient:
        """Discovery runs here, once per hook (``/version``, ``/apis``; each group version when first used)."""
        return self._call(DynamicClient, self.get_conn(), discoverer=InMemoryDiscoverer)

    def resource(self, api_version: str, kind: str) -> Resource:
        """The API resource for a kind. A kind not in the discovered set makes the discoverer look
        again once (LazyDiscoverer.search), so a CRD installed since discovery is found."""
        try:
            return self._call(self.dynamic_client.resources.get, api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise ResourceNotFoundError(
                f"the cluster serves no {kind} in {api_version} (is its CRD installed?)"
            ) from None

    # Reads

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The object as a dict, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        try:
            found = self._call(
                self.dynamic_client.get,
                resource,
                name=name,
                namespace=namespace if resource.namespaced else None,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found.to_dict()

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: Mapping[str, str] | str | None = None,
    ) -> list[dict]:
        """Objects of a kind (in a namespace, if given), filtered by labels."""
        resource = self.resource(api_version, kind)
        found = self._call(
            self.dynamic_client.get,
            resource,
            namespace=namespace if resource.namespaced else None,
            label_selector=format_label_selector(label_selector),
            _request_timeout=self.request_timeout,
        )
        return [item.to_dict() for item in found.items]

    # Writes

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> list[ApplyResult]:
        """Server-side apply each object in order; report whether it was created, updated or unchanged."""
        return [self.apply_one(obj) for obj in objects]

    def apply_one(self, obj: Mapping[str, Any], *, sensitive: bool = False) -> ApplyResult:
        """Apply one object. With ``sensitive``, errors name the object only (never its content)."""
        ref = object_ref(obj)
        metadata = obj.get("metadata") or {}
        api_version, kind = obj["apiVersion"], obj["kind"]
        try:
            before = self.get(api_version, kind, metadata["name"], metadata.get("namespace"))
            resource = self.resource(api_version, kind)
            after = self._call(
                self.dynamic_client.server_side_apply,
                resource,
                body=dict(obj),
                namespace=metadata.get("namespace") if resource.namespaced else None,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if sensitive:
                raise KubernetesApplyError("apply", ref, exc, exc.status) from None
            raise KubernetesApplyError("apply", ref, exc, exc.status) from exc
        result = ApplyResult(ref, _apply_action(before, after.metadata.resourceVersion))
        self.log.info("Applied %s: %s", ref, result.action)
        return result

    def delete(
        self, objects: Iterable[Mapping[str, Any]], *, owner: Owner = DEFAULT_OWNER
    ) -> list[DeleteResult]:
        """Delete each object in order. Missing objects count as done (404 is success); objects that
        exist without ``owner``'s labels (another environment's, or nobody's) are left alone."""
        return [self.delete_one(obj, owner=owner) for obj in objects]

    def delete_one(self, obj: Mapping[str, Any], *, owner: Owner = DEFAULT_OWNER) -> DeleteResult:
        ref = object_ref(obj)
        metadata = obj.get("metadata") or {}
        api_version, kind, name = obj["apiVersion"], obj["kind"], metadata["name"]
        try:
            resource = self.resource(api_version, kind)
        except ResourceNotFoundError:
            self.log.info("%s: kind %s not served, nothing to delete", ref, kind)
            return DeleteResult(ref, "absent")
        namespace = metadata.get("namespace") if resource.namespaced else None
        current = self.get(api_version, kind, name, namespace)
        if current is None:
            return DeleteResult(ref, "absent")
        if not owner.owns_k8s_object(current):
            self.log.warning("%s exists but is not managed by this DAG; leaving it alone", ref)
            return DeleteResult(ref, "not_owned")
        try:
            self._call(
                self.dynamic_client.delete,
                resource,
                name=name,
                namespace=namespace,
                body={"propagationPolicy": "Background"},
                _request_timeout=self.request_timeout,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise KubernetesApplyError("delete", ref, exc, exc.status) from exc
            return DeleteResult(ref, "absent")
        self.log.info("Deleted %s", ref)
        return DeleteResult(ref, "deleted")

    def wait_for_crds_established(self, crd_names: Iterable[str], timeout: float) -> None:
        """Block until every named CRD reports Established=True. Their kinds need no refresh here:
        ``resource()`` finds a kind discovered since (the discoverer looks again on a miss)."""
        pending = set(crd_names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                crd = self.get(CRD_API_VERSION, "CustomResourceDefinition", name)
                if crd is not None and condition_status(crd, "Established") == "True":
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"CRDs not Established after {timeout:.0f} s: {', '.join(sorted(pending))}"
                )
            time.sleep(CRD_POLL_INTERVAL)


class InMemoryDiscoverer(LazyDiscoverer):
    """The library's lazy discovery, kept in memory for the hook's life.

    The default reads and writes a cache file in the temp directory named after the API server's
    address: a task would start from another cluster's kinds (a reused loopback address, a cluster
    recreated under the same endpoint), so each hook used to discover twice, once to load and once
    to throw that away. Here the file is never read nor written (the name is unique and never created).
    """

    def __init__(self, client: DynamicClient, cache_file: str | None = None) -> None:
        never_written = os.path.join(tempfile.gettempdir(), f"gke-inference-discovery-{uuid.uuid4().hex}")
        super().__init__(client, never_written)

    def _write_cache(self) -> None:
        pass


class BoundedApiClient(ApiClient):
    """An ApiClient whose every request is bounded by ``request_timeout`` unless the call sets its own.

    Discovery (``GET /api``, ``/apis``, ``/version``) goes through ``DynamicClient.request``, which
    passes no ``_request_timeout``; urllib3 would then wait forever on a stalled API server.
    """

    def __init__(self, configuration: Configuration, request_timeout: float) -> None:
        super().__init__(configuration)
        self.request_timeout = request_timeout

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self.request_timeout
        return super().call_api(*args, **kwargs)


def _apply_action(before: dict | None, resource_version_after: str | None) -> ApplyAction:
    if before is None:
        return "created"
    if (before.get("metadata") or {}).get("resourceVersion") == resource_version_after:
        return "unchanged"
    return "updated"
