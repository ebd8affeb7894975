"""Before anything is created or torn down: can this run's GPUs and model be had at all?

Two live questions, read-only: does Compute list the GPU type in a zone of the region, taking
``gpu_count`` cards on one machine (``acceleratorTypes``)? May the Hugging Face token read the
model's files (the Hub's auth-check)? A "no" fails the run at once, before a rebuild tears the
running environment down; an unreachable API raises for Airflow to retry. Teardown checks nothing.
Hooks are imported inside ``execute`` to keep DAG parsing free of the client libraries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from gke_inference.arguments import arrives_later
from gke_inference.errors import is_service_disabled
from gke_inference.hooks._errors import InvalidInputError
from gke_inference.operators._gcp_base import GcpOperator


class PreflightOperator(GcpOperator):
    """Refuse a region without the GPU type, more GPUs than one machine takes, or a Hugging Face
    token that cannot read the model. XCom: ``{"checked": bool, "gpu_zones": [...], "hf": "ok"|...}``.
    """

    tutorial_step = "3.1-3.2"
    action = "The pre-flight check"
    template_fields: Sequence[str] = (
        *GcpOperator.template_fields,
        "mode",
        "region",
        "gpu_type",
        "gpu_count",
        "model_name",
        "hf_conn_id",
    )

    def __init__(
        self,
        *,
        mode: str,
        region: str,
        gpu_type: str,
        gpu_count: int,
        model_name: str,
        hf_conn_id: str = "huggingface_default",
        checks: Sequence[str] = ("gpus", "hugging_face"),
        compute_may_be_disabled: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.checks = tuple(checks)
        self.compute_may_be_disabled = compute_may_be_disabled
        self.mode = mode
        self.region = region
        self.gpu_type = gpu_type
        if not arrives_later(gpu_count) and (isinstance(gpu_count, bool) or not isinstance(gpu_count, int)):
            raise TypeError(f"gpu_count must be an int, got {gpu_count!r}")
        self.gpu_count = gpu_count
        self.model_name = model_name
        self.hf_conn_id = hf_conn_id

    def execute(self, context: Any) -> dict:
        if self.mode == "teardown":
            self.log.info("Mode teardown: nothing will be built, so nothing to check")
            return {"checked": False}
        result: dict = {"checked": True}
        if "gpus" in self.checks:
            result["gpu_zones"] = self.check_gpus()
        if "hugging_face" in self.checks:
            self.check_hugging_face_token()
            result["hf"] = "ok"
        return result

    def check_gpus(self) -> list[str] | None:
        from gke_inference.hooks.accelerators import AcceleratorTypesHook

        count = self.gpu_count
        with self.failing_fast_on_terminal_errors():
            hook = AcceleratorTypesHook(**self.hook_kwargs())
            try:
                offer = hook.availability(self.gpu_type, self.region, self.project_id)
            except Exception as exc:
                if not (self.compute_may_be_disabled and is_service_disabled(exc)):
                    raise
                # A new project: Compute is enabled by project_network.enable_apis, after this task;
                # project_network.check_gpu_zones asks again then, still before the first create.
                self.log.warning(
                    "Compute Engine API is disabled in project %s, so %s in %s is checked after "
                    "project_network.enable_apis, before the first create",
                    self.project_id,
                    self.gpu_type,
                    self.region,
                )
                return None
        if not offer.zones_in_region:
            elsewhere = ", ".join(offer.regions_elsewhere) or "none"
            raise AirflowFailException(
                f"No zone of region {self.region} offers GPU type {self.gpu_type} (Compute acceleratorTypes "
                f"lists it in no zone of {self.region}; regions that offer it: {elsewhere}). Choose "
                "another region or gpu_type."
            )
        if count > offer.max_cards_per_instance:
            raise AirflowFailException(
                f"gpu_count {count} is more {self.gpu_type} GPUs than one machine takes in {self.region} "
                f"(maximumCardsPerInstance {offer.max_cards_per_instance} in "
                f"{', '.join(offer.zones_in_region)}). Lower gpu_count."
            )
        self.log.info("%s is offered in %s", self.gpu_type, ", ".join(offer.zones_in_region))
        return offer.zones_in_region

    def check_hugging_face_token(self) -> None:
        from gke_inference.hooks.huggingface import HuggingFaceHubHook

        try:
            HuggingFaceHubHook(hf_conn_id=self.hf_conn_id).check_read_access(self.model_name)
        except InvalidInputError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("The token of connection %r may read %s", self.hf_conn_id, self.model_name)
