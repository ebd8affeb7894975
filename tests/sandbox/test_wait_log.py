"""The twin's wait log (sandbox/core/waits.py): when a pod became Ready and a Gateway Programmed,
each with when the controller first saw it, served at the admin endpoint's /waits. The benchmark's
measured critical path (bench/critical_path.py) is built from it."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from sandbox.core.waits import WaitLog
from sandbox.gcp.operations import Operation, OperationRunner
from tests.sandbox.conftest import add_proxy_only_subnet
from tests.sandbox.test_kube_controllers import (
    GATEWAY_V1,
    apply,
    condition_of,
    gateway,
    is_ready,
    vllm_deployment,
    wait_for_pods,
)


def served_waits(sandbox) -> list[dict]:
    with urllib.request.urlopen(f"{sandbox.info['admin_url']}/waits", timeout=10) as response:
        return json.load(response)


def test_pods_and_gateways_are_logged_when_they_become_ready(sandbox, kube, dynamic, namespace):
    asked = time.time()
    apply(dynamic, vllm_deployment("logged", namespace, replicas=2), namespace)
    pods = wait_for_pods(kube, namespace, "logged", is_ready, "two Ready pods")
    add_proxy_only_subnet(kube)
    apply(dynamic, gateway("logged-gw", namespace), namespace)
    kube.wait_for(
        lambda: (
            (
                condition_of(
                    kube.cluster.store.get(GATEWAY_V1, "Gateway", namespace, "logged-gw") or {}, "Programmed"
                )
                or {}
            ).get("status")
            == "True"
        ),
        what="a programmed Gateway",
    )
    done = time.time()

    waits = served_waits(sandbox)
    logged_pods = [w for w in waits if w["kind"] == "pod" and w.get("app") == "logged"]
    assert sorted(w["name"] for w in logged_pods) == sorted(
        f"{namespace}/{p['metadata']['name']}" for p in pods
    )
    profile = sandbox.sandbox.profile
    for wait in logged_pods:
        # Scheduling then the model load: no pod is Ready sooner than the profile allows.
        assert asked <= wait["began"] and wait["ended"] <= done
        assert wait["ended"] - wait["began"] >= profile.pod_scheduling + profile.model_load - 0.05
    (logged_gateway,) = [w for w in waits if w["kind"] == "gateway" and w["name"] == f"{namespace}/logged-gw"]
    assert logged_gateway["ended"] - logged_gateway["began"] >= profile.gateway_programming - 0.05
    # Logged once, when it became Ready: a later reconcile adds nothing.
    assert len([w for w in served_waits(sandbox) if w.get("app") == "logged"]) == 2


def test_operations_are_logged_with_when_they_ran():
    async def scenario() -> list[dict]:
        waits = WaitLog()
        runner = OperationRunner(waits)
        operation = Operation(name="op", operation_type="insert", target="projects/p/global/networks/v")

        async def work() -> dict:
            await asyncio.sleep(0.05)
            return {}

        runner.start(operation, work)
        await operation.finished.wait()
        return waits.entries()

    (entry,) = asyncio.run(scenario())
    assert entry["kind"] == "operation" and entry["name"] == "insert"
    assert entry["target"] == "projects/p/global/networks/v"
    assert entry["ended"] - entry["began"] >= 0.05
