"""mode plan: what a run would change, read and never written (like ``terraform plan``).

The plan does not know what the DAG builds: it reads the DAG's own ensure, apply and delete tasks,
renders their arguments with this run's plan (the same XComs they would get) and asks each for what
it would create (its spec, its rendered manifests). It then only reads (GET and LIST) the live
objects and reports each one as ``create``, ``unchanged``, ``differs (field: have -> want)``, and,
for what a rebuild or a teardown would remove, ``would delete``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, XComArg

from gke_inference import drift
from gke_inference.arguments import flag
from gke_inference.errors import failing_fast, is_service_disabled
from gke_inference.kube_objects import object_ref
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.crds import InstallCrdsOperator
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.plan import RelayPlanOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.operators.report import MARKDOWN_KEY, objects
from gke_inference.operators.teardown_gcp import (
    DeleteClusterOperator,
    DeleteNetworkOperator,
    DeleteSubnetworkOperator,
)
from gke_inference.operators.workloads import ApplyManifestsOperator, DeleteManifestsOperator
from gke_inference.results import gcp_ref
from gke_inference.run_note import NOTE_MAX_CHARS, set_run_note

CREATE, UNCHANGED, DIFFERS, WOULD_DELETE = "create", "unchanged", "differs", "would_delete"
# Exists, but a teardown leaves it (not the DAG's); could not be read (a cluster not serving yet);
# the run needs it and never creates it (use_existing_network), so it would fail.
NOT_OWNED, UNREAD, MISSING = "not_owned", "unread", "missing"
CHANGES = (CREATE, UNCHANGED, DIFFERS, WOULD_DELETE, NOT_OWNED, UNREAD, MISSING)
HEADINGS = {
    CREATE: "Create",
    UNCHANGED: "Unchanged",
    DIFFERS: "Differs (field: have -> want)",
    WOULD_DELETE: "A rebuild or teardown would delete",
    NOT_OWNED: "Not the DAG's (kept by a teardown)",
    UNREAD: "Not read",
    MISSING: "Missing (use_existing_network: the run would fail)",
}


class Changes:
    """The plan's findings, each object once, in the order found."""

    def __init__(self) -> None:
        self.found: dict[str, list[str]] = {name: [] for name in CHANGES}

    def add(self, change: str, ref: str) -> None:
        if ref not in self.found[change]:
            self.found[change].append(ref)

    def compare(
        self, ref: str, want: Mapping[str, Any], have: Mapping[str, Any] | None, *, created: bool = True
    ) -> None:
        """``created``: the run creates the object when it is missing (else it fails)."""
        if have is None:
            self.add(CREATE if created else MISSING, ref)
            return
        found = drift.differences(want, have)
        if found:
            self.add(DIFFERS, drift.describe(ref, found))
        else:
            self.add(UNCHANGED, ref)


class PlanChangesOperator(BaseOperator):
    """Report what an ensure run would create or find changed, and what a rebuild or teardown
    would delete; create, change and delete nothing.

    :param plan: the run's plan (``plan_run.output``): project and mode, for the report.
    :param airflow_api_conn_id: where the report is written as the run's note (as the run report).
    XCom: ``{"project_id", "mode", "create", "unchanged", "differs", "would_delete", "not_owned",
    "unread", "missing"}``, lists of refs (``differs`` entries carry ``(field: have -> want)``).
    """

    ui_color = "#fef7e0"
    template_fields: Sequence[str] = ("plan",)

    def __init__(
        self, *, plan: Mapping[str, Any], airflow_api_conn_id: str = "airflow_api", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.airflow_api_conn_id = airflow_api_conn_id

    def execute(self, context) -> dict[str, Any]:
        changes = Changes()
        with failing_fast("Planning the changes (plan mode)"):
            cluster = plan_gcp(self._rendered(context, GCP_ENSURES), changes)
            live = plan_kubernetes(self._rendered(context, KUBERNETES_ENSURES), cluster, context, changes)
            plan_teardown(self._rendered(context, TEARDOWN_DELETES), cluster, live, context, changes)
        report = {"project_id": self.plan["project_id"], "mode": self.plan["mode"], **changes.found}
        self.log.info("Plan (nothing was changed):\n%s", json.dumps(report, indent=2, ensure_ascii=False))
        markdown = plan_markdown(report, context["run_id"])
        context["ti"].xcom_push(key=MARKDOWN_KEY, value=markdown)
        set_run_note(self.airflow_api_conn_id, self.dag.dag_id, context["run_id"], markdown, self.log)
        return report

    def _rendered(self, context, kinds: tuple[type, ...]) -> list[Any]:
        """Copies of the DAG's tasks of these kinds, their arguments rendered as their run would."""
        context = {**context, "ti": RelayedPlan(context["ti"], relays_of(self.dag))}
        rendered = []
        for task in self.dag.tasks:
            if isinstance(task, kinds) and task.task_id != self.task_id:
                twin = copy.copy(task)
                twin.render_template_fields(context)
                rendered.append(twin)
        return rendered


def relays_of(dag) -> dict[str, str]:
    """task id of each task that relays the plan (a group's start) -> the task it relays it from."""
    return {
        task.task_id: task.plan.operator.task_id
        for task in dag.tasks
        if isinstance(task, RelayPlanOperator) and isinstance(task.plan, XComArg)
    }


class RelayedPlan:
    """The task instance, but what a relay (teardown.start, cleanup.start) would pass on is read
    where it comes from: a plan run never runs the relays, and they pass the plan on unchanged."""

    def __init__(self, ti, relays: Mapping[str, str]) -> None:
        self._ti = ti
        self._relays = relays

    def xcom_pull(self, task_ids=None, **kwargs):
        if isinstance(task_ids, str):
            task_ids = self._relays.get(task_ids, task_ids)
        return self._ti.xcom_pull(task_ids=task_ids, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._ti, name)


GCP_ENSURES = (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
    EnsureAutopilotClusterOperator,
)
KUBERNETES_ENSURES = (ApplyManifestsOperator, HuggingFaceSecretOperator)
TEARDOWN_DELETES = (
    DeleteManifestsOperator,
    DeleteClusterOperator,
    DeleteSubnetworkOperator,
    DeleteNetworkOperator,
)


# --- GCP: the APIs, the VPC and its subnets, the cluster


def plan_gcp(tasks: list[Any], changes: Changes):
    """Compare what the GCP ensure tasks would create; return the live cluster (None: none)."""
    cluster = None
    for task in tasks:
        if isinstance(task, EnableApisOperator):
            plan_apis(task, changes)
        elif isinstance(task, EnsureNetworkOperator):
            plan_network(task, changes)
        elif isinstance(task, EnsureSubnetworkOperator):
            plan_subnetwork(task, changes)
        elif isinstance(task, EnsureAutopilotClusterOperator):
            cluster = plan_cluster(task, changes)
    return cluster


def plan_apis(task: EnableApisOperator, changes: Changes) -> None:
    from gke_inference.hooks.service_usage import ServiceUsageHook

    hook = ServiceUsageHook(**task.hook_kwargs())
    project = hook.resolve_project_id(task.project_id)
    for service in task.services:
        changes.add(UNCHANGED if hook.is_enabled(service, project) else CREATE, gcp_ref("Api", service))


def plan_network(task: EnsureNetworkOperator, changes: Changes) -> None:
    from gke_inference.hooks.compute_network import network_resource

    hook = _compute_hook(task)
    have = _unless_disabled(hook.find_network, task.network_name, task.project_id)
    want = _wanted(network_resource(task.network_name, task.ownership.network_description))
    use_existing = flag(task.use_existing, "use_existing")
    # A VPC the user brought is used as it is: only its existence matters.
    ref = gcp_ref("Network", task.network_name)
    changes.compare(ref, {} if use_existing else want, _live(have), created=not use_existing)


def plan_subnetwork(task: EnsureSubnetworkOperator, changes: Changes) -> None:
    hook = _compute_hook(task)
    spec = task.spec()
    ref = gcp_ref("Subnetwork", spec.region, spec.name)
    network = _unless_disabled(hook.find_network, task.network_name, task.project_id)
    use_existing = flag(task.use_existing, "use_existing") and not spec.is_proxy_only
    if network is None:
        changes.add(MISSING if use_existing else CREATE, ref)
        return
    have = hook.existing_subnetwork(spec, task.network_name, hook.resolve_project_id(task.project_id))
    want = _wanted(spec.to_subnetwork(network.self_link, task.ownership.network_description))
    if spec.is_proxy_only:
        # The ensure takes any ACTIVE proxy-only subnet of the region, whatever its name and range.
        want = {key: want[key] for key in ("network", "purpose", "role")}
    # A subnet the user brought is used as it is (the run checks its secondary range names).
    changes.compare(ref, {} if use_existing else want, _live(have), created=not use_existing)


def plan_cluster(task: EnsureAutopilotClusterOperator, changes: Changes):
    from gke_inference.hooks.gke import GKEClusterHook

    hook = GKEClusterHook(location=task.location, **task.hook_kwargs())
    cluster = _unless_disabled(hook.find_cluster, task.cluster_name, task.project_id)
    want = _wanted(task.spec().to_cluster())
    changes.compare(gcp_ref("Cluster", task.location, task.cluster_name), want, _live(cluster))
    return cluster


def _compute_hook(task):
    from gke_inference.hooks.compute_network import ComputeNetworkHook

    return ComputeNetworkHook(**task.hook_kwargs())


def _unless_disabled(find, *args):
    """What ``find`` finds; None when its API is disabled (nothing of it can exist then)."""
    try:
        return find(*args)
    except Exception as exc:
        if is_service_disabled(exc):
            return None
        raise


def _wanted(message) -> dict:
    """A GCP resource the DAG would send: only the fields it sets."""
    return type(message).to_dict(message, use_integers_for_enums=False, including_default_value_fields=False)


def _live(message) -> dict | None:
    """A GCP resource as read: every field, so a field left empty compares as its default."""
    if message is None:
        return None
    return type(message).to_dict(message, use_integers_for_enums=False, including_default_value_fields=True)


# --- Kubernetes: what the apply tasks and the hf-token Secret task would write


def plan_kubernetes(tasks: list[Any], cluster, context, changes: Changes) -> dict[str, dict | None]:
    """Compare every object the apply tasks would write; return the live objects read, by ref."""
    wanted = desired_objects(tasks, cluster, context)
    reader = _cluster_reader(tasks, cluster, changes, wanted)
    if reader is None:
        return {}
    live = {ref: reader(obj) for ref, obj in wanted.items()}
    for ref, obj in wanted.items():
        changes.compare(ref, _comparable(obj), live[ref])
    return live


def desired_objects(tasks: list[Any], cluster, context) -> dict[str, dict]:
    """Every object the DAG would apply, by ref; a later task's wins (body routing replaces the route)."""
    wanted: dict[str, dict] = {}
    for task in tasks:
        if isinstance(task, HuggingFaceSecretOperator):
            # Its shape only: the token is neither read nor compared.
            secret = task.secret_object("", task.namespace)
            wanted[object_ref(secret)] = secret
        elif not isinstance(task, InstallCrdsOperator) or task.crd_set == crd_set_for(cluster):
            wanted.update((object_ref(obj), obj) for obj in task.render(context))
    return wanted


def crd_set_for(cluster) -> str:
    """The CRD branch a run would take (tutorial 2.2); a cluster still to be created is on a current
    GKE (its release channel's default), which serves the InferencePool CRD itself."""
    from gke_inference.gke_version import serves_inference_pool_crd

    version = cluster.current_master_version if cluster is not None else ""
    return "objective_only" if not version or serves_inference_pool_crd(version) else "full"


def _comparable(obj: Mapping[str, Any]) -> dict:
    if obj.get("kind") == "Secret":
        # A Secret is compared by its marks, never by its data.
        return {"type": obj.get("type"), "metadata": dict(obj["metadata"])}
    return dict(obj)


def _cluster_reader(tasks, cluster, changes: Changes, wanted: Mapping[str, dict]):
    """A function reading one object from the cluster, or None when there is no API to read: a
    cluster to be created (everything is ``create``) or one not serving yet (``unread``)."""
    from gke_inference.hooks.gke import not_serving

    target = next((task.cluster_target for task in tasks if hasattr(task, "cluster_target")), None)
    if target is None:
        return None
    reason = not_serving(cluster, target.cluster_name)
    if reason:
        change = CREATE if cluster is None else UNREAD
        for ref in wanted:
            changes.add(change, ref if change == CREATE else f"{ref} ({reason})")
        return None
    hook = target.kube_hook()
    return lambda obj: read_object(hook, obj)


def read_object(hook, obj: Mapping[str, Any]) -> dict | None:
    """The live object, or None when it (or its kind) does not exist."""
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    metadata = obj["metadata"]
    try:
        return hook.get(obj["apiVersion"], obj["kind"], metadata["name"], metadata.get("namespace"))
    except ResourceNotFoundError:
        return None


# --- What a rebuild or a teardown would delete: only what the DAG owns


def plan_teardown(
    tasks: list[Any], cluster, live: Mapping[str, dict | None], context, changes: Changes
) -> None:
    for task in tasks:
        for ref, owned in teardown_targets(task, cluster, live, context):
            changes.add(WOULD_DELETE if owned else NOT_OWNED, ref)


def teardown_targets(task, cluster, live, context) -> Iterator[tuple[str, bool]]:
    """(ref, owned by the DAG) of each existing object the delete task would look at."""
    if isinstance(task, DeleteManifestsOperator):
        for obj in task.objects_to_delete(context):
            found = live.get(object_ref(obj))
            if found is not None:
                yield object_ref(obj), task.ownership.owns_k8s_object(found)
    elif isinstance(task, DeleteClusterOperator):
        if cluster is not None:
            yield (
                gcp_ref("Cluster", task.location, task.cluster_name),
                task.ownership.owns_gcp_labels(dict(cluster.resource_labels)),
            )
    elif isinstance(task, DeleteSubnetworkOperator):
        found = _unless_disabled(
            _compute_hook(task).find_subnetwork, task.subnetwork_name, task.region, task.project_id
        )
        if found is not None:
            ref = gcp_ref("Subnetwork", task.region, task.subnetwork_name)
            yield ref, task.ownership.owns_network_description(found.description)
    elif isinstance(task, DeleteNetworkOperator):
        found = _unless_disabled(_compute_hook(task).find_network, task.network_name, task.project_id)
        if found is not None:
            yield (
                gcp_ref("Network", task.network_name),
                task.ownership.owns_network_description(found.description),
            )


def plan_markdown(report: Mapping[str, Any], run_id: str) -> str:
    """The plan as the run's note, in the run report's style: names when they fit, else counts."""
    heading = f"### Plan: what a run would change in `{report['project_id']}` (nothing was changed)"
    footer = f"_run `{run_id}`; the full plan is the `plan_changes` task's XCom_"
    present = [change for change in CHANGES if report[change] or change in (CREATE, UNCHANGED, DIFFERS)]
    named = [f"**{HEADINGS[c]} ({len(report[c])}):** {objects(report[c])}" for c in present]
    text = "\n".join([heading, "", *named, "", footer])
    if len(text) <= NOTE_MAX_CHARS:
        return text
    counted = [f"**{HEADINGS[c]}:** {len(report[c])}" for c in present]
    return "\n".join([heading, "", *counted, "", footer])[:NOTE_MAX_CHARS]


def builds_after_plan() -> bool:
    """A plan run ends with its report: the short circuit after it skips the build's first task and
    the run report, whose trigger rules would otherwise run them on plan_run's success alone."""
    return False
