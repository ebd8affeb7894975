"""The DAG's params: JSON schema per field, grouped into the Trigger form's sections.

Single-field rules live here, so the form and the REST API refuse bad values before a run
exists. Rules that need several fields (CIDR overlaps) live in `validation.py` and run in the
DAG's first task, before anything is created.
"""

from __future__ import annotations

import os
import re

from airflow.sdk import Param

from gke_inference.regions import GCP_REGIONS

# RFC 1035 label, as Compute Engine and Kubernetes require for names.
RESOURCE_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
PROJECT_ID = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
IPV4_CIDR = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$"
SEMVER_TAG = r"^v[0-9]+\.[0-9]+\.[0-9]+$"
HF_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"

MODES = ("ensure", "rebuild", "teardown", "plan")
# What a scheduled run does, from the deployment's environment (read at parse time like the schedule).
SCHEDULE_MODE_ENV = "GKE_INFERENCE_SCHEDULE_MODE"
SCHEDULE_MODES = ("rebuild", "ensure")
ON_FAILURE = ("keep", "teardown")
IMAGE_REFERENCE = r"^[a-z0-9][a-z0-9./_:@-]*$"
MAX_WAIT_SECONDS = 7200  # the longest a *_timeout param may make a wait

# Deployment settings, read at parse time like the schedule: a run may pick a connection or an
# image only from the deployment's list, so whoever may trigger the DAG cannot point it at any
# connection of the deployment or run any image with the Hugging Face token on a GPU.
GCP_CONN_IDS_ENV = "GKE_INFERENCE_GCP_CONN_IDS"
HF_CONN_IDS_ENV = "GKE_INFERENCE_HF_CONN_IDS"
VLLM_IMAGES_ENV = "GKE_INFERENCE_VLLM_IMAGES"
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.8.5"

NETWORK = "1. Project and network (tutorial 1)"
CLUSTER = "2. GKE Autopilot cluster (tutorial 2)"
MODEL = "3. Model server (tutorial 3.1-3.2)"
GATEWAY = "4. Inference Gateway (tutorial 3.3-3.4)"
CHECKS = "5. Checks and body-based routing (tutorial 4-5)"
RUN = "6. Run mode, connections and timeouts"


def _name(default: str, title: str, description: str, section: str, max_length: int = 63) -> Param:
    return Param(
        default,
        description=description,
        title=title,
        section=section,
        type="string",
        minLength=1,
        maxLength=max_length,
        pattern=RESOURCE_NAME,
    )


def _cidr(default: str, title: str, description: str) -> Param:
    return Param(
        default, description=description, title=title, section=NETWORK, type="string", pattern=IPV4_CIDR
    )


def _seconds(default: int, title: str, description: str) -> Param:
    return Param(
        default,
        description=description,
        title=title,
        section=RUN,
        type="integer",
        minimum=30,
        maximum=MAX_WAIT_SECONDS,
    )


def schedule_mode() -> str:
    """rebuild (default): every scheduled run starts from nothing; ensure: it repairs drift and keeps
    the endpoint up. A wrong value is an import error naming the variable."""
    mode = os.environ.get(SCHEDULE_MODE_ENV, "rebuild").strip().lower()
    if mode not in SCHEDULE_MODES:
        raise ValueError(f"{SCHEDULE_MODE_ENV} is {mode!r}; use one of {', '.join(SCHEDULE_MODES)}")
    return mode


def allowed(env_var: str, default: str, pattern: str | None = None) -> list[str]:
    """The deployment's allow-list in ``env_var`` (comma-separated; the first is the default)."""
    values = list(dict.fromkeys(v.strip() for v in os.environ.get(env_var, default).split(",") if v.strip()))
    if not values:
        raise ValueError(f"{env_var} is set but lists nothing; unset it or list at least one value")
    wrong = [value for value in values if pattern and not re.fullmatch(pattern, value)]
    if wrong:
        raise ValueError(f"{env_var} lists {', '.join(map(repr, wrong))}, which do not match {pattern}")
    return values


def _choice(env_var: str, default: str, title: str, description: str, section: str, **schema) -> Param:
    choices = allowed(env_var, default, schema.pop("pattern", None))
    return Param(
        choices[0],
        description=f"{description} The deployment allows these ({env_var}).",
        title=title,
        section=section,
        type="string",
        enum=choices,
        **schema,
    )


# Airflow resolves every param against its schema each time it compares a task's copy of the params
# while serializing the DAG (ParamsDict.__eq__ -> dump -> Param.resolve: twice per task, ~4,200
# resolves for this DAG), and jsonschema first checks the schema against its dialect's meta-schema.
# That check costs 0.19 ms under the default 2020-12 dialect and 0.045 ms under draft-07 (measured
# here): about 0.6 s of every parse of the DAG file. The schemas use nothing newer than draft-07.
SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def build_params() -> dict[str, Param]:
    params = _declared_params()
    for param in params.values():
        param.schema["$schema"] = SCHEMA_DIALECT
    return params


def _declared_params() -> dict[str, Param]:
    return {
        # 1. Project and network
        "project_id": Param(
            None,
            description="GCP project id. Leave empty to use the project of the GCP connection.",
            title="Project",
            section=NETWORK,
            type=["null", "string"],
            pattern=PROJECT_ID,
        ),
        "region": Param(
            "us-central1",
            description="Region of the subnets, the cluster and the regional Gateway.",
            title="Region",
            section=NETWORK,
            type="string",
            enum=list(GCP_REGIONS),
        ),
        "use_existing_network": Param(
            False,
            description="Use an existing VPC and node subnet (they must exist); only the proxy-only "
            "subnet is created if it is missing.",
            title="Use an existing VPC",
            section=NETWORK,
            type="boolean",
        ),
        "network_name": _name("inference-vpc", "VPC name", "Custom-mode VPC with regional routing.", NETWORK),
        "subnet_name": _name(
            "inference-subnet", "Node subnet name", "Subnet of the cluster's nodes.", NETWORK
        ),
        "subnet_range": _cidr("10.0.0.0/20", "Node subnet range", "Primary range of the node subnet."),
        "pods_range_name": _name("pods-range", "Pods range name", "Secondary range used by pods.", NETWORK),
        "pods_range": _cidr("10.4.0.0/14", "Pods range", "Secondary range for pod IPs."),
        "services_range_name": _name(
            "services-range", "Services range name", "Secondary range used by services.", NETWORK
        ),
        "services_range": _cidr("10.8.0.0/20", "Services range", "Secondary range for service IPs."),
        "proxy_subnet_name": _name(
            "proxy-only-subnet", "Proxy-only subnet name", "REGIONAL_MANAGED_PROXY subnet for Envoy.", NETWORK
        ),
        "proxy_subnet_range": _cidr(
            "10.129.0.0/23",
            "Proxy-only subnet range",
            "Range of the proxy-only subnet (a /23 or larger is advised).",
        ),
        # 2. Cluster
        "cluster_name": _name(
            "inference-gateway-lab",
            "Cluster name",
            "GKE Autopilot cluster name (at most 40 characters).",
            CLUSTER,
            max_length=40,
        ),
        "release_channel": Param(
            "RAPID",
            description="GKE release channel. The tutorial uses RAPID.",
            title="Release channel",
            section=CLUSTER,
            type="string",
            enum=["RAPID", "REGULAR", "STABLE"],
        ),
        "inference_extension_version": Param(
            "v1.0.1",
            description="Gateway API Inference Extension release: CRDs and the Endpoint Picker image.",
            title="Inference Extension version",
            section=CLUSTER,
            type="string",
            pattern=SEMVER_TAG,
        ),
        # 3. Model server
        "namespace": _name("default", "Namespace", "Kubernetes namespace of every workload.", MODEL),
        "compute_class_name": _name(
            "model-inference-class", "ComputeClass name", "Custom ComputeClass the model pods select.", MODEL
        ),
        "reservation_name": Param(
            None,
            description="Specific reservation tried first. Leave empty to skip reservations.",
            title="Reservation",
            section=MODEL,
            type=["null", "string"],
            pattern=RESOURCE_NAME,
        ),
        "flex_start": Param(
            True,
            description="Fall back to DWS Flex-start VMs.",
            title="Flex-start",
            section=MODEL,
            type="boolean",
        ),
        "spot": Param(
            True, description="Fall back to Spot VMs last.", title="Spot", section=MODEL, type="boolean"
        ),
        "gpu_type": Param(
            "nvidia-l4",
            description="GPU type of every ComputeClass priority.",
            title="GPU type",
            section=MODEL,
            type="string",
            enum=[
                "nvidia-l4",
                "nvidia-tesla-a100",
                "nvidia-a100-80gb",
                "nvidia-h100-80gb",
                "nvidia-h200-141gb",
            ],
        ),
        "gpu_count": Param(
            1,
            description="GPUs per model pod.",
            title="GPUs",
            section=MODEL,
            type="integer",
            minimum=1,
            maximum=8,
        ),
        "model_name": Param(
            "meta-llama/Llama-3.1-8B-Instruct",
            description="Hugging Face model id served by vLLM.",
            title="Model",
            section=MODEL,
            type="string",
            minLength=3,
            maxLength=128,
            pattern=HF_MODEL_ID,
        ),
        "max_model_len": Param(
            8192,
            description="vLLM --max-model-len: the longest prompt plus reply one request may have. vLLM "
            "refuses to start when one request of this length does not fit the KV cache the GPUs leave "
            "after the weights, so the run checks it against gpu_type and gpu_count before creating "
            "anything (for the models it knows: Llama 3.1 8B and 70B; other models are not checked). "
            "Llama 3.1 8B on one L4 fits about 29000 tokens; its full 131072 needs 2 L4s or an A100.",
            title="Max model length (tokens)",
            section=MODEL,
            type="integer",
            minimum=256,
            maximum=131072,
        ),
        "model_app_label": _name(
            "vllm-llama3-1-8b-instruct",
            "Model app label",
            "Deployment name and `app` label of the model pods.",
            MODEL,
        ),
        "vllm_image": _choice(
            VLLM_IMAGES_ENV,
            DEFAULT_VLLM_IMAGE,
            "vLLM image",
            "vLLM image. v0.8.x still emits vllm:gpu_cache_usage_perc, which EPP v1.0.x scores.",
            MODEL,
            pattern=IMAGE_REFERENCE,
        ),
        "replicas": Param(
            1,
            description="Model server replicas.",
            title="Replicas",
            section=MODEL,
            type="integer",
            minimum=1,
            maximum=16,
        ),
        # 4. Gateway
        "pool_name": _name(
            "vllm-llama-pool",
            "InferencePool name",
            "Pool and Endpoint Picker release name.",
            GATEWAY,
            max_length=40,
        ),
        "gateway_name": _name(
            "inference-gateway", "Gateway name", "The Gateway the model is served behind.", GATEWAY
        ),
        "gateway_class": Param(
            "gke-l7-regional-external-managed",
            description="Regional GatewayClass (body-based routing needs a regional class).",
            title="Gateway class",
            section=GATEWAY,
            type="string",
            enum=["gke-l7-regional-external-managed", "gke-l7-rilb"],
        ),
        "gateway_port": Param(
            80,
            description="Gateway HTTP listener port.",
            title="Listener port",
            section=GATEWAY,
            type="integer",
            minimum=1,
            maximum=65535,
        ),
        "bbr_version": Param(
            "v1.0.0",
            description="Body-based router release.",
            title="Body-based router version",
            section=GATEWAY,
            type="string",
            pattern=SEMVER_TAG,
        ),
        # 5. Checks
        "prompt": Param(
            "GKE Inference Gatewayについて一言で",
            description="Prompt of the chat-completion check.",
            title="Prompt",
            section=CHECKS,
            type="string",
            minLength=1,
            maxLength=2000,
        ),
        "max_tokens": Param(
            100,
            description="max_tokens of the check.",
            title="max_tokens",
            section=CHECKS,
            type="integer",
            minimum=1,
            maximum=4096,
        ),
        "wrong_model_name": Param(
            "meta-llama/Llama-3.1-10B-Instruct",
            description="A model name the gateway must reject once body-based routing is in place.",
            title="Wrong model name",
            section=CHECKS,
            type="string",
            minLength=3,
            maxLength=128,
            pattern=HF_MODEL_ID,
        ),
        # 6. Run
        "mode": Param(
            "ensure",
            description="ensure: create what is missing, keep what exists. rebuild: tear down what this DAG "
            "owns, then build again. teardown: remove what this DAG owns. plan: change nothing, report what "
            "ensure would create or find changed and what rebuild or teardown would delete. Scheduled runs do the "
            f"deployment's schedule mode ({SCHEDULE_MODE_ENV}: rebuild, the default, or ensure); manual "
            "runs default to ensure.",
            title="Mode",
            section=RUN,
            type="string",
            enum=list(MODES),
        ),
        "on_failure": Param(
            None,
            description="When the build fails after creating billable resources: keep (leave them for "
            "debugging) or teardown (remove what this DAG owns; the run still ends failed). Empty: "
            "keep for manual runs, teardown for scheduled runs.",
            title="On a failed build",
            section=RUN,
            type=["null", "string"],
            enum=[None, *ON_FAILURE],
        ),
        "keep_for_hours": Param(
            0,
            description="After a successful verify, tear the environment down after this many hours "
            "(a deferred wait in the same run, no worker slot held); 0 keeps it up. A weekly 'does the "
            "recipe still build' run with 1 costs about one GPU node hour, not a week of them.",
            title="Keep for (hours)",
            section=RUN,
            type="number",
            minimum=0,
            maximum=720,
        ),
        "gcp_conn_id": _choice(
            GCP_CONN_IDS_ENV, "google_cloud_default", "GCP connection", "Airflow connection to GCP.", RUN
        ),
        "hf_conn_id": _choice(
            HF_CONN_IDS_ENV,
            "huggingface_default",
            "Hugging Face connection",
            "Airflow connection whose password is the Hugging Face token.",
            RUN,
        ),
        "cluster_timeout": _seconds(
            1800, "Cluster wait (s)", "How long to wait for the cluster to be RUNNING."
        ),
        "pods_timeout": _seconds(
            900, "Model pods wait (s)", "How long to wait for the model pods to be Ready."
        ),
        "gateway_timeout": _seconds(600, "Gateway wait (s)", "How long to wait for the Gateway's address."),
    }
