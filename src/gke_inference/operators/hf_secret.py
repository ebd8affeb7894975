"""The Hugging Face token as the ``hf-token`` Secret (tutorial 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from gke_inference import manifests
from gke_inference.cluster_target import ClusterTaskMixin
from gke_inference.errors import failing_fast
from gke_inference.kube_objects import object_ref
from gke_inference.results import one

# The hooks pull in the Kubernetes and Google clients; they are imported where a task runs, never
# when the scheduler parses the DAG.


class HuggingFaceSecretOperator(ClusterTaskMixin, BaseOperator):
    """Write the Hugging Face token from an Airflow connection into the ``hf-token`` Secret (3.2).

    The token is read at run time from the connection's password; it never appears in a template
    field, a log line, XCom or an error message.
    XCom: ``{"created"|"updated"|"unchanged": ["Secret/<namespace>/hf-token"], "key": "token"}``.
    """

    template_fields: Sequence[str] = (
        *ClusterTaskMixin.cluster_template_fields,
        "hf_conn_id",
        "namespace",
    )

    def __init__(
        self,
        *,
        namespace: str,
        hf_conn_id: str = "huggingface_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namespace = namespace
        self.hf_conn_id = hf_conn_id

    def _read_token(self) -> str:
        from gke_inference.hooks.huggingface import HubTokenError, hub_token

        try:
            return hub_token(self.hf_conn_id)[0]
        except HubTokenError as err:
            raise AirflowFailException(str(err)) from None

    def secret_object(self, token: str, namespace: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": manifests.NAMES["hf_secret"],
                "namespace": namespace,
                "labels": self.ownership.k8s_labels,
            },
            "stringData": {manifests.NAMES["hf_secret_key"]: token},
        }

    def execute(self, context: Context) -> dict[str, str]:
        secret = self.secret_object(self._read_token(), self.namespace)
        with failing_fast("Writing the hf-token Secret (tutorial 3.2)"):
            result = self.kube_hook.apply_one(secret, sensitive=True)
        return one(result.action, object_ref(secret), key=manifests.NAMES["hf_secret_key"])
