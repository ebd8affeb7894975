"""Kubernetes operators run directly (``op.execute(context)``) against sandbox GKE clusters."""

from __future__ import annotations

import base64
import json
import logging
import re
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from gke_inference.gke_version import MANAGED_INFERENCE_POOL_SINCE
from gke_inference.operators.crds import ChooseCrdSetOperator, InstallCrdsOperator
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.workloads import ApplyManifestsOperator, DeleteManifestsOperator
from gke_inference.params import build_params

DEFAULTS = {name: param.value for name, param in build_params().items()}
OBJECTIVE_CRD = "inferenceobjectives.inference.networking.x-k8s.io"
V1_POOL_CRD = "inferencepools.inference.networking.k8s.io"
V1ALPHA2_POOL_CRD = "inferencepools.inference.networking.x-k8s.io"
OLD_GKE_VERSION = "1.33.5-gke.1080000"


def values_for(**params):
    """The values a manifest operator renders with: the plan's params, some overridden."""
    return {**DEFAULTS, **params}


def crd_names(hook):
    return {
        crd["metadata"]["name"] for crd in hook.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    }


# Branch choice (tutorial 2.2)


@pytest.mark.parametrize(
    ("version", "branch"),
    [
        ("1.33.5-gke.1080000", "cluster.install_crds_full_set"),
        ("1.34.0-gke.1625999", "cluster.install_crds_full_set"),
        (MANAGED_INFERENCE_POOL_SINCE, "cluster.install_crds_objective_only"),
        ("1.35.1-gke.1200", "cluster.install_crds_objective_only"),
    ],
)
def test_branch_follows_the_cluster_version(version, branch):
    chooser = ChooseCrdSetOperator(
        task_id="choose_crd_set",
        cluster={"current_master_version": version},
        objective_only_task_id="cluster.install_crds_objective_only",
        full_set_task_id="cluster.install_crds_full_set",
    )
    assert chooser.choose_branch({}) == branch


def test_branch_reads_the_version_from_the_cluster_when_not_given(kube_cluster, old_kube_cluster):
    def chooser(cluster):
        return ChooseCrdSetOperator(
            task_id="choose_crd_set",
            cluster=None,  # no cluster sensor result: the version is read from the cluster
            objective_only_task_id="objective_only",
            full_set_task_id="full",
            **cluster.kwargs,
        )

    assert chooser(kube_cluster).choose_branch({}) == "objective_only"
    assert chooser(old_kube_cluster).choose_branch({}) == "full"


def test_branch_takes_the_cluster_sensor_result_not_a_string():
    with pytest.raises(TypeError, match="cluster must be the cluster sensor's result"):
        ChooseCrdSetOperator(
            task_id="choose", cluster="1.35.1-gke.1200", objective_only_task_id="a", full_set_task_id="b"
        )


def test_branch_refuses_a_version_it_cannot_read():
    chooser = ChooseCrdSetOperator(
        task_id="choose",
        cluster={"current_master_version": "latest"},
        objective_only_task_id="a",
        full_set_task_id="b",
    )
    with pytest.raises(AirflowFailException, match="not a GKE version"):
        chooser.choose_branch({})


# CRD installation


def test_objective_only_set_on_a_current_cluster(kube_cluster):
    install = InstallCrdsOperator(
        task_id="install_crds", crd_set="objective_only", values=DEFAULTS, **kube_cluster.kwargs
    )
    first = install.execute({})
    assert first["crd_set"] == "objective_only"
    assert first.get("created", []) + first.get("unchanged", []) == [
        f"CustomResourceDefinition/{OBJECTIVE_CRD}"
    ]
    assert {OBJECTIVE_CRD, V1_POOL_CRD} <= crd_names(kube_cluster.hook())

    again = install.execute({})
    assert "created" not in again
    assert again["unchanged"] == [f"CustomResourceDefinition/{OBJECTIVE_CRD}"]


def test_full_set_on_an_old_cluster_serves_both_pool_versions(old_kube_cluster, namespace_factory):
    hook = old_kube_cluster.hook()
    assert V1_POOL_CRD not in crd_names(hook)
    result = InstallCrdsOperator(
        task_id="install_crds", crd_set="full", values=DEFAULTS, **old_kube_cluster.kwargs
    ).execute({})
    assert len(result.get("created", []) + result.get("unchanged", [])) == 3
    assert {OBJECTIVE_CRD, V1_POOL_CRD, V1ALPHA2_POOL_CRD} <= crd_names(hook)

    # The new kinds resolve right away (discovery was refreshed), in both API versions.
    namespace = namespace_factory(old_kube_cluster)
    applied = ApplyManifestsOperator(
        task_id="pool",
        manifest="inferencepool",
        values=values_for(namespace=namespace),
        **old_kube_cluster.kwargs,
    ).execute({})
    assert f"InferencePool/{namespace}/vllm-llama-pool" in applied["created"]
    legacy = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferencePool",
        "metadata": {"name": "legacy", "namespace": namespace},
        "spec": {"selector": {"app": "x"}, "targetPortNumber": 8000},
    }
    assert [r.action for r in hook.apply([legacy])] == ["created"]


def test_objective_only_set_fails_where_gke_does_not_serve_the_pool_crd(cluster_factory):
    # A cluster of its own: the full set installed by another test would hide the gap.
    cluster = cluster_factory(proxy_only_subnet=False, version=OLD_GKE_VERSION)
    install = InstallCrdsOperator(
        task_id="install_crds", crd_set="objective_only", values=DEFAULTS, **cluster.kwargs
    )
    with pytest.raises(AirflowFailException, match=f"does not serve CRD {V1_POOL_CRD}.*full CRD set"):
        install.execute({})


def test_unknown_crd_set_is_refused_at_parse_time():
    with pytest.raises(ValueError, match="crd_set must be one of"):
        InstallCrdsOperator(task_id="x", crd_set="everything", values={}, cluster_name="c", location="l")


# Manifests


def test_apply_manifests_is_idempotent(kube_cluster, namespace):
    context = {}
    apply_all = ApplyManifestsOperator(
        task_id="apply",
        manifest=[
            "model-inference-class.yaml",
            "vllm-llama3-1-8b-instruct.yaml",
            "inferencepool",
            "gateway.yaml",
        ],
        values=values_for(namespace=namespace),
        **kube_cluster.kwargs,
    )
    first = apply_all.execute(context)
    assert f"Deployment/{namespace}/vllm-llama3-1-8b-instruct" in first["created"]
    assert f"Gateway/{namespace}/inference-gateway" in first["created"]
    assert f"HTTPRoute/{namespace}/llm-route" in first["created"]
    json.dumps(first)  # XCom-able

    second = apply_all.execute(context)
    assert "created" not in second
    assert sorted(second.get("unchanged", []) + second.get("updated", [])) == sorted(
        ref for refs in first.values() for ref in refs
    )


def test_manifest_error_fails_without_retry(kube_cluster, namespace):
    values = values_for(namespace=namespace, flex_start=False, spot=False, reservation_name=None)
    op = ApplyManifestsOperator(
        task_id="apply", manifest="model-inference-class.yaml", values=values, **kube_cluster.kwargs
    )
    with pytest.raises(AirflowFailException, match="at least one capacity source"):
        op.execute({})


# Hugging Face token Secret (tutorial 3.2)


def test_secret_holds_the_token_and_the_token_goes_nowhere_else(
    kube_cluster, namespace, sandbox, caplog, capfd
):
    token = sandbox.sandbox.hf_token
    op = HuggingFaceSecretOperator(task_id="hf_secret", namespace=namespace, **kube_cluster.kwargs)
    with caplog.at_level(logging.DEBUG):
        result = op.execute({})

    secret = kube_cluster.hook().get("v1", "Secret", "hf-token", namespace)
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    assert result == {"created": [f"Secret/{namespace}/hf-token"], "key": "token"}
    captured = capfd.readouterr()
    for text in (json.dumps(result), caplog.text, captured.out, captured.err, repr(op.__dict__)):
        assert token not in text
    assert all(token not in str(getattr(op, field)) for field in op.template_fields)


def test_secret_namespace_is_an_argument_not_read_from_the_params(kube_cluster, namespace):
    # The operator no longer falls back to the run's params.namespace: the DAG passes plan["namespace"].
    with pytest.raises(TypeError, match="namespace"):
        HuggingFaceSecretOperator(task_id="hf_secret", **kube_cluster.kwargs)
    op = HuggingFaceSecretOperator(task_id="hf_secret", namespace=namespace, **kube_cluster.kwargs)
    result = op.execute({"params": {"namespace": "ignored"}})
    assert [f"Secret/{namespace}/hf-token"] in [result.get(k) for k in ("created", "updated", "unchanged")]


def test_empty_token_fails_at_once(kube_cluster, namespace, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HF_EMPTY", json.dumps({"conn_type": "generic", "password": ""}))
    op = HuggingFaceSecretOperator(
        task_id="hf", hf_conn_id="hf_empty", namespace=namespace, **kube_cluster.kwargs
    )
    with pytest.raises(AirflowFailException, match="'hf_empty' has no password"):
        op.execute({})
    assert kube_cluster.hook().get("v1", "Secret", "hf-token", namespace) is None


def test_missing_connection_fails_at_once(kube_cluster, namespace):
    op = HuggingFaceSecretOperator(
        task_id="hf", hf_conn_id="no_such_conn", namespace=namespace, **kube_cluster.kwargs
    )
    with pytest.raises(AirflowFailException, match="'no_such_conn' does not exist"):
        op.execute({})


def test_secret_apply_error_does_not_leak_the_token(kube_cluster, sandbox, clean_faults):
    token = sandbox.sandbox.hf_token
    sandbox.faults_add(
        api="kube", method="PATCH", path="/namespaces/forbidden-ns/secrets/hf-token", status=403
    )
    op = HuggingFaceSecretOperator(task_id="hf", namespace="forbidden-ns", **kube_cluster.kwargs)
    with pytest.raises(AirflowFailException) as caught:
        op.execute({})
    assert "HTTP 403" in str(caught.value)
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all(token not in repr(exc) for exc in chain if exc is not None)


# Teardown


def test_delete_removes_owned_objects_and_keeps_foreign_ones(kube_cluster, namespace):
    context, values = {}, values_for(namespace=namespace)
    hook = kube_cluster.hook()
    ApplyManifestsOperator(
        task_id="apply", manifest="gateway.yaml", values=values, **kube_cluster.kwargs
    ).execute(context)
    HuggingFaceSecretOperator(task_id="hf", namespace=namespace, **kube_cluster.kwargs).execute(context)
    foreign = {
        "apiVersion": "networking.gke.io/v1",
        "kind": "GCPRoutingExtension",
        "metadata": {
            "name": "body-based-router",
            "namespace": namespace,
            "labels": {"owner": "someone-else"},
        },
        "spec": {"targetRefs": [], "extensionChains": []},
    }
    hook.apply([foreign])

    teardown = DeleteManifestsOperator(
        task_id="teardown", namespace=namespace, values=values, **kube_cluster.kwargs
    )
    result = teardown.execute(context)

    assert f"Gateway/{namespace}/inference-gateway" in result["deleted"]
    assert f"HTTPRoute/{namespace}/llm-route" in result["deleted"]
    assert f"Secret/{namespace}/hf-token" in result["deleted"]
    assert result["not_owned"] == [f"GCPRoutingExtension/{namespace}/body-based-router"]
    assert f"Deployment/{namespace}/vllm-llama3-1-8b-instruct" in result["absent"]
    # A programmed Gateway keeps GKE's finalizer until its load balancer is removed, then goes.
    deadline = time.monotonic() + 10
    while hook.get("gateway.networking.k8s.io/v1", "Gateway", "inference-gateway", namespace) is not None:
        assert time.monotonic() < deadline, "the deleted Gateway never went"
        time.sleep(0.1)
    assert hook.get("networking.gke.io/v1", "GCPRoutingExtension", "body-based-router", namespace) is not None

    rerun = teardown.execute(context)
    assert "deleted" not in rerun


def test_delete_on_a_missing_cluster_is_a_no_op(kube_cluster):
    gone = {**kube_cluster.kwargs, "cluster_name": "never-created"}
    result = DeleteManifestsOperator(
        task_id="teardown", manifest="gateway.yaml", namespace="default", values=DEFAULTS, **gone
    ).execute({})
    assert set(result) == {"absent"}


# The v1 InferencePool CRD that GKE installs itself, late (issue 11, section 4)


def _install_deferred(cluster, **options):
    from airflow.sdk.exceptions import TaskDeferred

    install = InstallCrdsOperator(
        task_id="install_crds",
        crd_set="objective_only",
        poll_interval=0.2,
        values=DEFAULTS,
        **options,
        **cluster.kwargs,
    )
    with pytest.raises(TaskDeferred) as deferred:
        install.execute({})
    return install, deferred.value


async def test_objective_only_waits_deferred_for_the_pool_crd_gke_installs_late(
    sandbox, clean_faults, cluster_factory
):
    from airflow.sdk.module_loading import import_string

    from gke_inference.triggers.kubernetes import ServedCrdsTrigger
    from tests.plugins.test_kube_triggers import first_event

    sandbox.faults_add(behaviour="managed_crds_late", cluster="inference-gateway-lab")  # until cleared
    cluster = cluster_factory(proxy_only_subnet=False)
    install, deferred = _install_deferred(cluster, managed_crds_timeout=30)
    trigger = deferred.trigger
    assert isinstance(trigger, ServedCrdsTrigger) and trigger.crd_names == [V1_POOL_CRD]
    classpath, kwargs = trigger.serialize()
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    assert OBJECTIVE_CRD in crd_names(cluster.hook())  # ours is in before the wait

    sandbox.faults_clear()  # GKE gets round to it
    event = await first_event(trigger)

    assert event["status"] == "success"
    result = install.execute_complete({}, event)
    assert result["crd_set"] == "objective_only"
    assert f"CustomResourceDefinition/{OBJECTIVE_CRD}" in result["created"]
    assert V1_POOL_CRD in crd_names(cluster.hook())


async def test_the_wait_for_a_gke_crd_ends_naming_the_crd_the_version_and_the_time(
    sandbox, clean_faults, cluster_factory
):
    from gke_inference.hooks.gke import GKEClusterHook
    from tests.plugins.test_kube_triggers import first_event

    sandbox.faults_add(behaviour="managed_crds_late", cluster="inference-gateway-lab")
    cluster = cluster_factory(proxy_only_subnet=False)
    version = (
        GKEClusterHook(location=cluster.location)
        .get_cluster(cluster.cluster_name, cluster.project_id)
        .current_master_version
    )
    install, deferred = _install_deferred(cluster, managed_crds_timeout=1.0)

    event = await first_event(deferred.trigger)

    assert event["status"] == "timeout"
    with pytest.raises(AirflowFailException) as failed:
        install.execute_complete({}, event)
    message = str(failed.value)
    assert V1_POOL_CRD in message and f"GKE {version}" in message
    assert re.search(r"gave up after [1-9]\d*s", message) and "tutorial 2.2" in message


# The cluster keywords: taken once, by ClusterTaskMixin, for every task that targets a cluster

CLUSTER_TASKS = {
    "apply": lambda **kw: ApplyManifestsOperator(task_id="t", manifest="gateway.yaml", values={}, **kw),
    "install_crds": lambda **kw: InstallCrdsOperator(task_id="t", crd_set="full", values={}, **kw),
    "delete": lambda **kw: DeleteManifestsOperator(task_id="t", namespace="n", values={}, **kw),
    "hf_secret": lambda **kw: HuggingFaceSecretOperator(task_id="t", namespace="n", **kw),
}
CLUSTER_KEYWORDS = ("cluster_name", "location", "project_id", "gcp_conn_id", "impersonation_chain")


@pytest.mark.parametrize("build", CLUSTER_TASKS.values(), ids=CLUSTER_TASKS.keys())
def test_cluster_keywords_from_the_plan_make_it_upstream_and_stay_unresolved_until_run(build):
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.definitions.xcom_arg import XComArg

    with DAG("cluster_keywords", schedule=None):
        plan = EmptyOperator(task_id="plan").output
        op = build(**{name: plan[name] for name in CLUSTER_KEYWORDS})  # the DAG's **cluster_target
    assert op.upstream_task_ids == {"plan"}
    assert all(isinstance(getattr(op, name), XComArg) for name in CLUSTER_KEYWORDS)
    assert set(CLUSTER_KEYWORDS) <= set(op.template_fields)


@pytest.mark.parametrize("build", CLUSTER_TASKS.values(), ids=CLUSTER_TASKS.keys())
def test_cluster_keywords_render_before_the_hooks_are_built(build):
    op = build(
        cluster_name="{{ params.cluster }}",
        location="{{ params.region }}",
        project_id="{{ params.project }}",
        impersonation_chain="{{ params.sa }}",
    )
    op.render_template_fields(
        {"params": {"cluster": "c1", "region": "europe-west4", "project": "p1", "sa": "sa@p1.iam"}}
    )
    target = op.cluster_target
    assert (target.cluster_name, target.location, target.project_id) == ("c1", "europe-west4", "p1")
    assert (target.gcp_conn_id, target.impersonation_chain) == ("google_cloud_default", "sa@p1.iam")


@pytest.mark.parametrize("build", CLUSTER_TASKS.values(), ids=CLUSTER_TASKS.keys())
def test_a_cluster_task_without_a_cluster_is_refused_when_built(build):
    with pytest.raises(TypeError, match="needs cluster_name and location"):
        build(location="us-central1")
    with pytest.raises(TypeError, match="Invalid arguments|unexpected keyword"):
        build(cluster_name="c", location="l", cluster="c")  # typo'd keywords still reach BaseOperator
