"""
### GKE Inference Gateway: build, verify and rebuild an LLM inference platform

The tutorial "GKE Inference Gateway を利用した推論基盤の構築" as a DAG: a VPC with a proxy-only subnet,
a GKE Autopilot cluster, the Inference Extension CRDs, a ComputeClass, vLLM serving
Llama-3.1-8B-Instruct, an InferencePool with its Endpoint Picker, a Gateway and HTTPRoute, then
body-based routing so that only the right model name passes. One TaskGroup per tutorial section;
every task is idempotent and retries on its own; waits are deferrable.

Modes: `ensure` (manual default) creates what is missing; `rebuild` (scheduled runs, unless
GKE_INFERENCE_SCHEDULE_MODE=ensure) tears down what this DAG owns and builds again; `teardown` only
tears down. Cost guard: `keep_for_hours` tears a verified environment down after that long, and
`on_failure` = teardown (scheduled runs' default) removes what a failed build left; the run still
ends failed. Environments defined in YAML (`environments/` beside this file) each get their own DAG,
`gke_inference_gateway__<name>`, from this same code; with none, this one DAG.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, TaskGroup

from gke_inference import environments, notifications
from gke_inference.docs import task_doc
from gke_inference.endpoint_asset import ENDPOINT_ALIAS
from gke_inference.environments import Environment
from gke_inference.operators.checks import ChatCompletionCheckOperator, ModelRoutingCheckOperator
from gke_inference.operators.cluster import EnsureAutopilotClusterOperator
from gke_inference.operators.cost_guard import CostGuardGateOperator, KeepForOperator
from gke_inference.operators.crds import ChooseCrdSetOperator, InstallCrdsOperator
from gke_inference.operators.hf_secret import HuggingFaceSecretOperator
from gke_inference.operators.plan import ChooseModeOperator, PlanRunOperator, is_rebuild
from gke_inference.operators.plan_changes import PlanChangesOperator, builds_after_plan
from gke_inference.operators.preflight import PreflightOperator
from gke_inference.operators.project_network import (
    EnableApisOperator,
    EnsureNetworkOperator,
    EnsureSubnetworkOperator,
)
from gke_inference.operators.report import RunReportOperator
from gke_inference.operators.workloads import ApplyManifestsOperator
from gke_inference.params import MAX_WAIT_SECONDS
from gke_inference.sensors.cluster import ClusterRunningSensor
from gke_inference.sensors.kubernetes import GatewayAddressSensor, PodsReadySensor
from gke_inference.teardown_group import teardown_group
from gke_inference.timing import record_start, record_timing

DESCRIPTION = (
    "GKE Autopilot + Inference Gateway + vLLM Llama-3.1-8B + body-based routing, rebuilt and verified"
)
RETRY_DELAY = timedelta(seconds=int(os.environ.get("GKE_INFERENCE_RETRY_DELAY_SECONDS", "30")))
# The waits start in the triggerer, where Airflow 3.3 cuts a wait at the task's execution_timeout
# (TaskInstance.defer_task): longer than any *_timeout param, so the wait's own deadline ends it.
WAIT_LIMIT = {"execution_timeout": timedelta(seconds=MAX_WAIT_SECONDS + 300)}
# Environment definitions (*.yaml) beside this file, unless GKE_INFERENCE_ENVIRONMENTS_DIR names a folder.
ENVIRONMENTS_DIR = os.path.join(os.path.dirname(__file__), "environments")


def gateway_dag(environment: Environment) -> DAG:
    """The tutorial's DAG; an environment's DAG carries its name, params, schedule and targets."""
    params = environments.dag_params(environment)
    with DAG(
        dag_id=environment.dag_id,
        description=environment.description or DESCRIPTION,
        doc_md=__doc__,
        schedule=environment.schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=params,
        default_args={
            "owner": "platform",
            "retries": 3,
            "retry_delay": RETRY_DELAY,
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=10),
            "execution_timeout": timedelta(minutes=30),
            "pre_execute": record_start,
            "post_execute": record_timing,
            # each task's final failure is mailed / posted to the targets of the deployment or environment
            **notifications.task_callbacks(environment.notify),
        },
        **notifications.dag_callbacks(environment.notify),
        deadline=notifications.deadline_alert(
            settings=environment.notify, keep_for_hours=params["keep_for_hours"].value
        ),
        tags=["gke", "inference-gateway", "vllm", *environment.tags],
    ) as dag:
        # The only task that reads the run's params: every later task takes its values from the plan,
        # typed, as `plan["key"]` (each key is its own XCom), never as a "{{ params.x }}" string.
        plan_run = PlanRunOperator(task_id="plan_run", schedule_mode=environment.schedule_mode)
        plan = plan_run.output
        gcp = {"project_id": plan["project_id"], "gcp_conn_id": plan["gcp_conn_id"]}
        regional = {**gcp, "region": plan["region"]}
        cluster_target = {**gcp, "location": plan["region"], "cluster_name": plan["cluster_name"]}
        pre_flight = {
            **regional,
            "mode": plan["mode"],
            "gpu_type": plan["gpu_type"],
            "gpu_count": plan["gpu_count"],
            "model_name": plan["model_name"],
            "execution_timeout": timedelta(minutes=5),
        }
        model_pods = {"app": plan["model_app_label"]}

        preflight = PreflightOperator(task_id="preflight", **pre_flight, hf_conn_id=plan["hf_conn_id"])
        choose_mode = ChooseModeOperator(
            task_id="choose_mode",
            mode=plan["mode"],
            build_task_id="build",
            teardown_task_id="teardown.start",
            plan_task_id="plan_changes",
        )
        build = EmptyOperator(task_id="build")
        # mode plan: read what the DAG's own tasks would create and delete, report it, change nothing;
        # then stop: the build's first task and the run report are skipped (their "one success" trigger
        # rules would count plan_run's success).
        plan_changes = PlanChangesOperator(task_id="plan_changes", plan=plan)
        stop_after_plan = ShortCircuitOperator(
            task_id="stop_after_plan",
            python_callable=builds_after_plan,
            ignore_downstream_trigger_rules=False,
        )
        choose_mode >> plan_changes >> stop_after_plan

        # The mode's teardown (rebuild, teardown); its tasks take the plan from teardown.start.
        teardown = teardown_group("teardown", plan)
        start = teardown.get_child_by_label("start")

        rebuild_after_teardown = ShortCircuitOperator(
            task_id="rebuild_after_teardown",
            python_callable=is_rebuild,
            op_args=[plan["mode"]],
            ignore_downstream_trigger_rules=False,
        )

        with TaskGroup("project_network") as project_network:
            enable_apis = EnableApisOperator(
                task_id="enable_apis", **gcp, trigger_rule="none_failed_min_one_success"
            )
            ensure_network = EnsureNetworkOperator(
                task_id="ensure_network",
                **gcp,
                network_name=plan["network_name"],
                use_existing=plan["use_existing_network"],
            )
            ensure_node_subnet = EnsureSubnetworkOperator(
                task_id="ensure_node_subnet",
                **regional,
                network_name=plan["network_name"],
                subnetwork_name=plan["subnet_name"],
                ip_cidr_range=plan["subnet_range"],
                secondary_ranges=[
                    (plan["pods_range_name"], plan["pods_range"]),
                    (plan["services_range_name"], plan["services_range"]),
                ],
                use_existing=plan["use_existing_network"],
            )
            ensure_proxy_subnet = EnsureSubnetworkOperator(
                task_id="ensure_proxy_subnet",
                **regional,
                network_name=plan["network_name"],
                subnetwork_name=plan["proxy_subnet_name"],
                ip_cidr_range=plan["proxy_subnet_range"],
                purpose="REGIONAL_MANAGED_PROXY",
                role="ACTIVE",
            )
            # On a new project Compute is only enabled now: the pre-flight's GPU question is asked again.
            check_gpu_zones = PreflightOperator(
                task_id="check_gpu_zones", **pre_flight, checks=["gpus"], compute_may_be_disabled=False
            )
            enable_apis >> check_gpu_zones >> ensure_network >> [ensure_node_subnet, ensure_proxy_subnet]

        with TaskGroup("cluster") as cluster:
            ensure_cluster = EnsureAutopilotClusterOperator(
                task_id="ensure_cluster",
                **cluster_target,
                network_name=plan["network_name"],
                subnetwork_name=plan["subnet_name"],
                pods_range_name=plan["pods_range_name"],
                services_range_name=plan["services_range_name"],
                release_channel=plan["release_channel"],
            )
            wait_cluster_running = ClusterRunningSensor(
                task_id="wait_cluster_running",
                **cluster_target,
                timeout=plan["cluster_timeout"],
                **WAIT_LIMIT,
            )
            choose_crd_set = ChooseCrdSetOperator(
                task_id="choose_crd_set",
                cluster=wait_cluster_running.output,
                objective_only_task_id="cluster.install_crds_objective_only",
                full_set_task_id="cluster.install_crds_full_set",
            )
            install_crds_objective_only = InstallCrdsOperator(
                task_id="install_crds_objective_only", crd_set="objective_only", **cluster_target, values=plan
            )
            install_crds_full_set = InstallCrdsOperator(
                task_id="install_crds_full_set", crd_set="full", **cluster_target, values=plan
            )
            # Whichever CRD set the branch chose is installed (the other one is skipped).
            crds_installed = EmptyOperator(
                task_id="crds_installed", trigger_rule="none_failed_min_one_success"
            )
            ensure_cluster >> wait_cluster_running >> choose_crd_set
            choose_crd_set >> [install_crds_objective_only, install_crds_full_set] >> crds_installed

        with TaskGroup("model_server") as model_server:
            apply_compute_class = ApplyManifestsOperator(
                task_id="apply_compute_class",
                manifest="model-inference-class.yaml",
                **cluster_target,
                values=plan,
            )
            create_hf_secret = HuggingFaceSecretOperator(
                task_id="create_hf_secret",
                hf_conn_id=plan["hf_conn_id"],
                namespace=plan["namespace"],
                **cluster_target,
            )
            deploy_vllm = ApplyManifestsOperator(
                task_id="deploy_vllm",
                manifest="vllm-llama3-1-8b-instruct.yaml",
                **cluster_target,
                values=plan,
            )
            [apply_compute_class, create_hf_secret] >> deploy_vllm

        with TaskGroup("gateway") as gateway:
            apply_inference_pool = ApplyManifestsOperator(
                task_id="apply_inference_pool",
                manifest="inferencepool",
                **cluster_target,
                values=plan,
            )
            apply_gateway = ApplyManifestsOperator(
                task_id="apply_gateway", manifest="gateway.yaml", **cluster_target, values=plan
            )
            apply_inference_pool >> apply_gateway

        with TaskGroup("verify") as verify:
            wait_gateway_address = GatewayAddressSensor(
                task_id="wait_gateway_address",
                **WAIT_LIMIT,
                **cluster_target,
                namespace=plan["namespace"],
                gateway_name=plan["gateway_name"],
                timeout=plan["gateway_timeout"],
            )
            wait_model_pods_ready = PodsReadySensor(
                task_id="wait_model_pods_ready",
                **WAIT_LIMIT,
                **cluster_target,
                namespace=plan["namespace"],
                label_selector=model_pods,
                replicas=plan["replicas"],
                timeout=plan["pods_timeout"],
            )
            # What the checks depend on, looked at when the gateway does not answer: which is gone is named.
            through_the_gateway = {
                **cluster_target,
                "gateway_address": wait_gateway_address.output,
                "port": plan["gateway_port"],
                "namespace": plan["namespace"],
                "gateway_name": plan["gateway_name"],
                "pool_name": plan["pool_name"],
                "prompt": plan["prompt"],
                "max_tokens": plan["max_tokens"],
            }
            check_chat_completion = ChatCompletionCheckOperator(
                task_id="check_chat_completion", **through_the_gateway, model=plan["model_name"]
            )
            [wait_gateway_address, wait_model_pods_ready] >> check_chat_completion

        with TaskGroup("body_routing") as body_routing:
            install_body_based_router = ApplyManifestsOperator(
                task_id="install_body_based_router",
                manifest="body-based-router",
                **cluster_target,
                values=plan,
            )
            wait_body_based_router = PodsReadySensor(
                task_id="wait_body_based_router",
                **WAIT_LIMIT,
                **cluster_target,
                namespace=plan["namespace"],
                label_selector={"app": "body-based-router"},
                replicas=1,
                timeout=plan["pods_timeout"],
                tutorial_step="5.1",
            )
            apply_body_routing_route = ApplyManifestsOperator(
                task_id="apply_body_routing_route",
                manifest="body-routing.yaml",
                **cluster_target,
                values=plan,
            )
            check_right_model = ModelRoutingCheckOperator(
                task_id="check_right_model",
                **through_the_gateway,
                model=plan["model_name"],
                expect="accepted",
            )
            check_wrong_model_rejected = ModelRoutingCheckOperator(
                task_id="check_wrong_model_rejected",
                **through_the_gateway,
                model=plan["wrong_model_name"],
                expect="rejected",
            )
            # The model-only route replaces the catch-all, so the router must already add the header, and
            # a rejection only means something once the right model is known to pass.
            install_body_based_router >> wait_body_based_router >> apply_body_routing_route
            apply_body_routing_route >> check_right_model >> check_wrong_model_rejected

        run_report = RunReportOperator(
            task_id="run_report",
            plan=plan,
            gateway_address=wait_gateway_address.output,
            chat=check_chat_completion.output,
            rejection=check_wrong_model_rejected.output,
            trigger_rule="none_failed_min_one_success",
            outlets=[ENDPOINT_ALIAS],
        )

        # The cost guard (issue 15 section 3): after a successful verify, wait keep_for_hours (0: keep),
        # then tear down; after a failed build, tear down if on_failure says so. The gate waits for every
        # build task (all_done on each, so nothing is still creating), opens the cleanup group or skips it.
        # run_report stays a leaf, so a failed build leaves the run failed whatever the cleanup does.
        keep_for = KeepForOperator(task_id="keep_for", hours=plan["keep_for_hours"])
        build_tasks = [
            task
            for group in (project_network, cluster, model_server, gateway, verify, body_routing)
            for task in group.iter_tasks()
        ]
        cleanup = teardown_group(
            "cleanup",
            plan,
            start=CostGuardGateOperator,
            build_task_ids=[task.task_id for task in build_tasks],
            keep_for_task_id=keep_for.task_id,
        )
        cleanup_gate = cleanup.get_child_by_label("start")

        plan_run >> preflight >> choose_mode >> [build, start]
        teardown >> rebuild_after_teardown >> enable_apis
        build >> enable_apis
        stop_after_plan >> [enable_apis, run_report]
        ensure_node_subnet >> ensure_cluster
        wait_cluster_running >> [apply_compute_class, create_hf_secret]
        crds_installed >> apply_inference_pool
        ensure_proxy_subnet >> apply_gateway
        deploy_vllm >> wait_model_pods_ready
        apply_gateway >> wait_gateway_address
        check_chat_completion >> install_body_based_router
        [check_wrong_model_rejected, teardown.get_child_by_label("delete_network")] >> run_report
        check_wrong_model_rejected >> keep_for
        [*build_tasks, keep_for] >> cleanup_gate

    for task in dag.tasks:
        task.doc_md = task_doc(task.task_id)
    return dag


# One DAG per environment defined in YAML (gke_inference.environments); none defined: the one DAG.
for _environment in environments.defined_or_default(ENVIRONMENTS_DIR):
    globals()[_environment.dag_id] = gateway_dag(_environment)
