"""Render the Kubernetes manifests (the package's ``manifests`` data: include/manifests/ in the repo) from DAG params.

Each manifest is a Jinja template of one or more YAML documents; a directory stands for every
template in it, in file-name order (names carry numeric prefixes where apply order matters).
Templates see ``params`` (the DAG params), ``labels`` (the ownership labels every object carries),
``names`` and ``ports`` (constants shared between templates and operators), and the filters
``json`` (safe scalar quoting) and ``merged`` (label maps).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import yaml

from gke_inference.ownership import DEFAULT_OWNER, Owner

# Package data: the wheel carries include/manifests/ as gke_inference/manifests; in the repo that path is
# a symlink to include/manifests/, so an editable install reads the source itself.
MANIFESTS_DIR = Path(resources.files("gke_inference") / "manifests")

# Names and ports that more than one template (or an operator) must agree on.
NAMES = {
    "http_route": "llm-route",
    "hf_secret": "hf-token",
    "hf_secret_key": "token",
    "body_based_router": "body-based-router",
}
PORTS = {
    "model_server": 8000,
    "epp_grpc": 9002,
    "epp_grpc_health": 9003,
    "epp_metrics": 9090,
    "bbr_grpc": 9004,
    "bbr_grpc_health": 9005,
}

# Kinds without a namespace; everything else is rendered into params.namespace.
CLUSTER_SCOPED_KINDS = frozenset(
    {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ComputeClass", "Namespace"}
)

# vLLM renamed its KV-cache gauge in 0.10 (gpu_cache_usage_perc -> kv_cache_usage_perc); EPP v1.0.1
# reads the old name unless told otherwise.
_VLLM_TAG = re.compile(r":v?(\d+)\.(\d+)")


class ManifestError(ValueError):
    """A manifest that cannot be rendered into valid Kubernetes objects."""


def kv_cache_metric_for(vllm_image: str) -> str:
    match = _VLLM_TAG.search(vllm_image or "")
    if match and (int(match[1]), int(match[2])) < (0, 10):
        return "vllm:gpu_cache_usage_perc"
    return "vllm:kv_cache_usage_perc"


def _fail(message: str) -> None:
    raise ManifestError(message)


def _json(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the missing value
    return json.dumps(value, ensure_ascii=False)


def _merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    return {**base, **extra}


def _environment(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = _json
    env.filters["merged"] = _merged
    env.globals.update(fail=_fail, kv_cache_metric_for=kv_cache_metric_for, names=NAMES, ports=PORTS)
    return env


def template_paths(relative_path: str, root: Path = MANIFESTS_DIR) -> list[str]:
    """The template files a manifest path stands for, relative to root, in apply order."""
    target = (root / relative_path).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise ManifestError(f"manifest path escapes the manifests directory: {relative_path!r}")
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix == ".yaml" and not p.name.startswith("_"))
        if not files:
            raise ManifestError(f"manifest directory {relative_path!r} holds no .yaml templates")
        return [str(p.relative_to(root.resolve())) for p in files]
    if target.is_file():
        return [str(target.relative_to(root.resolve()))]
    raise ManifestError(f"no manifest {relative_path!r} under {root}")


def render(
    relative_path: str, params: Mapping[str, Any], root: Path = MANIFESTS_DIR, owner: Owner = DEFAULT_OWNER
) -> list[dict]:
    """Render a manifest file or directory into Kubernetes objects, checked for shape and labels;
    ``owner``: whose labels they carry (an environment's DAG passes its own)."""
    env = _environment(root)
    context = {"params": dict(params), "labels": owner.k8s_labels}
    objects: list[dict] = []
    for template_name in template_paths(relative_path, root):
        text = _render_text(env, template_name, context)
        try:
            documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(f"{template_name} renders to invalid YAML: {exc}") from exc
        for index, doc in enumerate(documents):
            _check_object(doc, f"{template_name} document {index + 1}", params, owner)
            objects.append(doc)
    return objects


def _render_text(env: jinja2.Environment, template_name: str, context: dict) -> str:
    try:
        return env.get_template(template_name).render(context)
    except jinja2.UndefinedError as exc:
        raise ManifestError(f"{template_name} needs a value that is missing: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ManifestError(f"{template_name} line {exc.lineno}: {exc.message}") from None


def _check_object(doc: Any, where: str, params: Mapping[str, Any], owner: Owner) -> None:
    if not isinstance(doc, dict):
        raise ManifestError(f"{where} is not a mapping")
    for field in ("apiVersion", "kind"):
        if not doc.get(field):
            raise ManifestError(f"{where} has no {field}")
    metadata = doc.get("metadata") or {}
    label = f"{where} ({doc['kind']})"
    if not metadata.get("name"):
        raise ManifestError(f"{label} has no metadata.name")
    if not owner.owns_k8s_object(doc):
        raise ManifestError(f"{label} lacks the ownership labels {owner.k8s_labels}")
    namespaced = doc["kind"] not in CLUSTER_SCOPED_KINDS
    if namespaced and metadata.get("namespace") != params.get("namespace"):
        raise ManifestError(f"{label} must be in namespace {params.get('namespace')!r}")
    if not namespaced and "namespace" in metadata:
        raise ManifestError(f"{label} is cluster-scoped and must not set a namespace")
