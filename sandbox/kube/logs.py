"""`pods/log`: what `kubectl logs` shows for a simulated container.

No process runs, so the text is derived from the container's simulated state: a vLLM server's
start-up lines (and, once Ready, that it serves), or the Hugging Face error a crash-looping
container exited with. Waiting containers have no logs, as on a real cluster.
"""

from __future__ import annotations

from typing import Any

from sandbox.dataplane.podspec import model_server_spec
from sandbox.kube.modelservers import served_model
from sandbox.kube.status import KubeApiError, bad_request


def _container(pod: dict[str, Any], name: str | None) -> dict[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or []
    pod_name = pod["metadata"]["name"]
    if name is None:
        if len(containers) == 1:
            return containers[0]
        names = " ".join(c["name"] for c in containers)
        raise bad_request(f"a container name must be specified for pod {pod_name}, choose one of: [{names}]")
    for container in containers:
        if container["name"] == name:
            return container
    raise bad_request(f"container {name} is not valid for pod {pod_name}")


def _status(pod: dict[str, Any], name: str) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == name), {})


def pod_log(pod: dict[str, Any], container_name: str | None, previous: bool, tail_lines: int | None) -> str:
    container = _container(pod, container_name)
    status = _status(pod, container["name"])
    state = status.get("state") or {}
    last_exit = (status.get("lastState") or {}).get("terminated")
    waiting = state.get("waiting") or {}
    if previous or (waiting.get("reason") == "CrashLoopBackOff" and last_exit):
        if not last_exit:
            raise bad_request(
                f'previous terminated container "{container["name"]}" in pod "{pod["metadata"]["name"]}" not found'
            )
        lines = [
            *_startup_lines(container, last_exit.get("finishedAt", "")),
            f"ERROR {last_exit.get('message', '')}",
        ]
    elif "running" in state:
        lines = _startup_lines(container, state["running"].get("startedAt", ""))
        if status.get("ready"):
            lines += _serving_lines(container, pod)
    else:
        reason = waiting.get("reason") or "ContainerCreating"
        raise KubeApiError(
            400,
            "BadRequest",
            f'container "{container["name"]}" in pod "{pod["metadata"]["name"]}" is waiting to start: {reason}',
        )
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    return "".join(f"{line}\n" for line in lines)


def _startup_lines(container: dict[str, Any], started_at: str) -> list[str]:
    model = served_model(container)
    if not model:
        return [f"{started_at} {container['name']}: started ({container.get('image', '')})"]
    return [
        f"INFO {started_at} api_server.py: vLLM API server ({container.get('image', '')})",
        f"INFO {started_at} api_server.py: args: {' '.join(str(a) for a in container.get('args') or [])}",
        f"INFO {started_at} model_runner.py: Starting to load model {model}...",
    ]


def _serving_lines(container: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    if not served_model(container):
        return []
    port = next((p.get("containerPort") for p in container.get("ports") or []), 8000)
    try:
        spec = model_server_spec(pod)
    except ValueError:  # args vLLM would refuse; the data plane skips such pods too
        spec = None
    # The KV-cache lines vLLM's V1 engine logs once sized (vllm/v1/core/kv_cache_utils.py).
    kv_cache = (
        [
            f"INFO kv_cache_utils.py: GPU KV cache size: {spec.kv_cache_tokens:,} tokens",
            f"INFO kv_cache_utils.py: Maximum concurrency for {spec.max_model_len:,} tokens per request: "
            f"{spec.kv_cache_tokens / spec.max_model_len:.2f}x",
        ]
        if spec
        else []
    )
    return [
        "INFO model_runner.py: Loading model weights took 15.0 GiB (simulated)",
        *kv_cache,
        "INFO:     Application startup complete.",
        f"INFO:     Uvicorn running on http://0.0.0.0:{port} (Press CTRL+C to quit)",
    ]
