"""Each task's docs in the UI: the tutorial step it implements and its gcloud/kubectl equivalent."""

from __future__ import annotations

TASK_DOCS: dict[str, tuple[str, str]] = {
    # task id: (what it does, the hand-run equivalent)
    "plan_run": (
        "Checks the params as a whole (CIDR overlaps, distinct names, a GPU count Autopilot offers, a "
        "max_model_len whose KV cache fits the GPUs) before anything is created, "
        "resolves the project (param or the GCP connection's) and the mode (scheduled runs rebuild).",
        "export PROJECT_ID=... REGION=...   # tutorial 1.1",
    ),
    "preflight": (
        "Before anything is created or torn down (a rebuild included), asks the live APIs, read-only: "
        "does Compute list `gpu_type` in a zone of the region (`acceleratorTypes`), taking `gpu_count` "
        "cards on one machine (`maximumCardsPerInstance`)? May the Hugging Face connection's token "
        "read `model_name` (the Hub's auth-check: 401 bad token, 403 gated model not granted)? A no "
        "fails the run at once; an unreachable API is retried. Teardown checks nothing. The Hub "
        "endpoint can be overridden with the connection extra `endpoint`.",
        'gcloud compute accelerator-types list --filter="name=nvidia-l4 AND zone~^${REGION}-"\n'
        'curl -H "Authorization: Bearer ${HF_TOKEN}" '
        "https://huggingface.co/api/models/meta-llama/Llama-3.1-8B-Instruct/auth-check",
    ),
    "choose_mode": ("`ensure` builds straight away; `rebuild` and `teardown` tear down first.", "-"),
    "build": ("Join point of the build path.", "-"),
    "plan_changes": (
        "mode plan: what an ensure would create or find changed, and what a rebuild or teardown would "
        "delete, read from the live objects (GET and LIST only); nothing is created or deleted.",
        "gcloud compute networks describe ${NETWORK}\n"
        "gcloud container clusters describe ${CLUSTER} --region ${REGION}\n"
        "kubectl diff -f manifests/",
    ),
    "stop_after_plan": ("mode plan ends after its report: the build is skipped.", "-"),
    "teardown.start": (
        "Join point of the teardown path: the cluster delete runs once the teardown starts, whether "
        "deleting the workloads or waiting for the load balancer worked or not.",
        "-",
    ),
    "teardown.delete_workloads": (
        "Deletes the Gateway, routes, pool and body-based router this DAG applied, so GKE releases "
        "their load-balancer resources before the cluster goes. A cluster that is gone, being deleted, "
        "ERROR or DEGRADED has none to delete: the task says so and succeeds.",
        "kubectl delete -f body-routing.yaml -f gateway.yaml ...",
    ),
    "teardown.wait_gateway_released": (
        "Waits, deferred, until the deleted Gateway is gone: GKE keeps its finalizer while it removes "
        "the load balancer (forwarding rule, proxy, URL map, backends, NEGs), which would otherwise "
        "outlive the cluster and keep the subnets and the VPC in use. Ends at once when the cluster "
        "is gone or not serving; what is left is swept after the cluster.",
        "kubectl wait --for=delete gateway/${GATEWAY_NAME} --timeout=30m",
    ),
    "teardown.delete_cluster": (
        "Deletes the Autopilot cluster if it carries this DAG's label, whatever its state (ERROR too) "
        "and whether the workloads were deleted or not.",
        "gcloud container clusters delete ${CLUSTER_NAME} --region=${REGION}",
    ),
    "teardown.sweep_load_balancer": (
        "Deletes what GKE built for this DAG's Gateway and left behind (cluster deleted first, or an "
        "interrupted teardown): gkegw1-* resources named for its namespace and Gateway in this region "
        "and VPC, and what they reference. Fails naming anything else that still uses the subnets or VPC.",
        "gcloud compute forwarding-rules list --filter='name~^gkegw1-.*-${NAMESPACE}-${GATEWAY_NAME}-' ...",
    ),
    "teardown.delete_proxy_subnet": (
        "Deletes the proxy-only subnet if this DAG created it.",
        "gcloud compute networks subnets delete proxy-only-subnet --region=${REGION}",
    ),
    "teardown.delete_node_subnet": (
        "Deletes the node subnet if this DAG created it.",
        "gcloud compute networks subnets delete ${SUBNET_NAME} --region=${REGION}",
    ),
    "teardown.delete_network": (
        "Deletes the VPC if this DAG created it; an existing VPC you pointed the DAG at survives.",
        "gcloud compute networks delete ${NETWORK_NAME}",
    ),
    "rebuild_after_teardown": ("Goes on to build only in `rebuild` mode.", "-"),
    "project_network.enable_apis": (
        "Tutorial 1.2: enables the eight APIs the tutorial lists, only those still disabled.",
        "gcloud services enable compute.googleapis.com container.googleapis.com ...",
    ),
    "project_network.check_gpu_zones": (
        "The pre-flight's GPU question asked again once Compute is enabled (a new project has it "
        "disabled when `preflight` runs): does a zone of the region offer `gpu_type` with `gpu_count` "
        "cards on one machine? Read-only, before the first create; a no fails the run at once.",
        'gcloud compute accelerator-types list --filter="name=${GPU_TYPE} AND zone~^${REGION}-"',
    ),
    "project_network.ensure_network": (
        "Tutorial 1.3: custom-mode VPC with regional dynamic routing. In existing-network mode it "
        "only checks the VPC exists.",
        "gcloud compute networks create ${NETWORK_NAME} --subnet-mode=custom --bgp-routing-mode=regional",
    ),
    "project_network.ensure_node_subnet": (
        "Tutorial 1.3: node subnet with the pods and services secondary ranges.",
        "gcloud compute networks subnets create ${SUBNET_NAME} --network=${NETWORK_NAME} "
        "--region=${REGION} --range=10.0.0.0/20 "
        "--secondary-range=pods-range=10.4.0.0/14,services-range=10.8.0.0/20",
    ),
    "project_network.ensure_proxy_subnet": (
        "Tutorial 1.3: proxy-only subnet where the regional Gateway's Envoy proxies run. Without it "
        "the Gateway is never programmed.",
        "gcloud compute networks subnets create proxy-only-subnet --purpose=REGIONAL_MANAGED_PROXY "
        "--role=ACTIVE --region=${REGION} --network=${NETWORK_NAME} --range=10.129.0.0/23",
    ),
    "cluster.ensure_cluster": (
        "Tutorial 2.1: GKE Autopilot cluster on the rapid channel, VPC-native on the two secondary "
        "ranges. An existing cluster is checked, not recreated.",
        "gcloud container clusters create-auto ${CLUSTER_NAME} --region=${REGION} "
        "--network=${NETWORK_NAME} --subnetwork=${SUBNET_NAME} --cluster-secondary-range-name=pods-range "
        "--services-secondary-range-name=services-range --release-channel=rapid --async",
    ),
    "cluster.wait_cluster_running": (
        "Tutorial 2.1: waits (deferred, no worker slot held) until the cluster is RUNNING; fails at "
        "once if it goes to ERROR.",
        'gcloud container clusters describe ${CLUSTER_NAME} --region=${REGION} --format="value(status)"',
    ),
    "cluster.choose_crd_set": (
        "Tutorial 2.2: picks the CRD set by the cluster's GKE version (1.34.0-gke.1626000 and later "
        "ship the InferencePool CRD themselves).",
        "gcloud container clusters describe ... --format='value(currentMasterVersion)'",
    ),
    "cluster.install_crds_objective_only": (
        "Tutorial 2.2, GKE >= 1.34.0-gke.1626000: only the InferenceObjective CRD (v1.0.0); then "
        "waits, deferred (up to 10 min), for the v1 InferencePool CRD that GKE installs itself some "
        "time after the cluster is RUNNING.",
        "kubectl apply -f .../v1.0.0/config/crd/bases/inference.networking.x-k8s.io_inferenceobjectives.yaml",
    ),
    "cluster.install_crds_full_set": (
        "Tutorial 2.2, older GKE: the full v1.0.0 CRD set (InferencePool v1 and v1alpha2, "
        "InferenceObjective).",
        "kubectl apply -f .../releases/download/v1.0.0/manifests.yaml",
    ),
    "model_server.apply_compute_class": (
        "Tutorial 3.1: custom ComputeClass trying a reservation, then DWS Flex-start, then Spot.",
        "kubectl apply -f model-inference-class.yaml",
    ),
    "model_server.create_hf_secret": (
        "Tutorial 3.2: Secret `hf-token` from the Hugging Face Airflow connection. The token is "
        "never logged or stored in XCom.",
        "kubectl create secret generic hf-token --from-literal=token=<YOUR HUGGING FACE TOKEN>",
    ),
    "model_server.deploy_vllm": (
        "Tutorial 3.2: vLLM serving the model on the ComputeClass.",
        "kubectl apply -f vllm-llama3-1-8b-instruct.yaml",
    ),
    "gateway.apply_inference_pool": (
        "Tutorial 3.3: InferencePool plus its Endpoint Picker, as the inferencepool chart v1.0.1 "
        "renders them for GKE (the picker is a Deployment of its own, not a sidecar).",
        "helm install vllm-llama-pool --set inferencePool.modelServers.matchLabels.app=... "
        "--set provider.name=gke --version v1.0.1 oci://registry.k8s.io/.../inferencepool",
    ),
    "gateway.apply_gateway": (
        "Tutorial 3.4: Gateway `inference-gateway` and the HTTPRoute to the pool.",
        "kubectl apply -f gateway.yaml",
    ),
    "verify.wait_gateway_address": (
        "Tutorial 4.1: waits (deferred) for the Gateway's address with Programmed=True.",
        "kubectl get gateway inference-gateway -o jsonpath='{.status.addresses[0].value}'",
    ),
    "verify.wait_model_pods_ready": (
        "Tutorial 4.1: waits (deferred) until the model pods are Ready; fails at once on "
        "CrashLoopBackOff or an image error, with the reason.",
        "kubectl wait --for=condition=Ready pod -l app=vllm-llama3-1-8b-instruct --timeout=900s",
    ),
    "verify.check_chat_completion": (
        "Tutorial 4.2: a chat completion through the Gateway returns 200 and a reply.",
        "curl -i -X POST http://${GATEWAY_IP}/v1/chat/completions -H 'Content-Type: application/json' "
        '-d \'{"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": [...], "max_tokens": 100}\'',
    ),
    "body_routing.install_body_based_router": (
        "Tutorial 5.1 step 1: the body-based router and its GCPRoutingExtension, as the "
        "body-based-routing chart v1.0.0 renders them for GKE.",
        "helm install body-based-router oci://registry.k8s.io/.../body-based-routing "
        "--set provider.name=gke --set inferenceGateway.name=inference-gateway --version v1.0.0",
    ),
    "body_routing.wait_body_based_router": (
        "Tutorial 5.1: waits (deferred) until the body-based router runs; the model-only route "
        "would otherwise reject every request.",
        "kubectl wait --for=condition=Ready pod -l app=body-based-router --timeout=900s",
    ),
    "body_routing.apply_body_routing_route": (
        "Tutorial 5.1 step 2: replaces the catch-all route with one that matches only the model name.",
        "kubectl apply -f body-routing.yaml",
    ),
    "body_routing.check_right_model": (
        "Tutorial 5.1 step 3: the right model name is still accepted.",
        'curl -i -X POST http://${GATEWAY_IP}/v1/chat/completions -H "Content-Type: application/json" -d \'{"model": "meta-llama/Llama-3.1-8B-Instruct", ...}\'',
    ),
    "body_routing.check_wrong_model_rejected": (
        "Tutorial 5.1 step 3: a wrong model name is rejected by the Gateway itself (404, no route), "
        "not by vLLM. Runs after the right model passed, so the 404 proves the header route works. "
        "Fails if the request is accepted.",
        'curl -i -X POST http://${GATEWAY_IP}/v1/chat/completions -H "Content-Type: application/json" -d \'{"model": "meta-llama/Llama-3.1-10B-Instruct", ...}\'',
    ),
    "cluster.crds_installed": (
        "Join point after whichever CRD set the branch chose; the InferencePool waits for it.",
        "-",
    ),
    "keep_for": (
        "Cost guard: after a successful verify, waits `keep_for_hours` (deferred, no worker slot), "
        "then the cleanup group tears the environment down. 0 keeps it up (skipped).",
        "sleep $((KEEP_FOR_HOURS * 3600))",
    ),
    "cleanup.start": (
        "Cost guard gate, once every build task is done: opens the cleanup group when `keep_for` "
        "has passed, or when the build failed and `on_failure` is teardown (scheduled runs' "
        "default); else skips it. The run still ends failed after a failed build.",
        "-",
    ),
    "run_report": (
        "Writes the run report (sections and durations, gateway URL, the model's reply, the "
        "rejection status, what was created and what was found) to its log and XCom.",
        "-",
    ),
}


def task_doc(task_id: str) -> str:
    # The cost guard's cleanup group is built by the same factory as the teardown group.
    what, equivalent = TASK_DOCS.get(task_id) or TASK_DOCS[task_id.replace("cleanup.", "teardown.", 1)]
    return f"{what}\n\n**By hand:**\n\n```bash\n{equivalent}\n```\n"
