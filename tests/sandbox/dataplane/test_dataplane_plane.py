"""The DataPlane following the store: servers start, move and stop with the objects they stand for."""

from __future__ import annotations

import httpx
import pytest

from sandbox.dataplane.harness import GATEWAY, MODEL, NAMESPACE, eventually

GATEWAY_KIND = ("gateway.networking.k8s.io/v1", "Gateway")
HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}]}


async def reachable(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(url)
        return True
    except httpx.TransportError:
        return False


async def test_a_pod_that_loses_readiness_loses_its_server_and_gets_it_back(lab):
    (pod,) = await lab.add_model_pods(1)
    url = f"http://{lab.pod_ip(pod)}:8000/health"
    assert await reachable(url)
    lab.set_ready(pod, False)
    await eventually(lambda: not lab.dataplane.model_servers)
    assert not await reachable(url)
    lab.set_ready(pod, True)
    await eventually(lambda: bool(lab.dataplane.model_servers))
    assert await reachable(url)


async def test_a_pod_with_unusable_vllm_args_is_skipped_without_stopping_the_others(lab, caplog):
    lab.store.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "broken", "namespace": NAMESPACE},
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "image": "vllm/vllm-openai:v0.8.5",
                        "args": ["--model", MODEL, "--max-num-seqs", "many"],
                    }
                ]
            },
        }
    )
    lab.set_ready("broken", True)
    (healthy,) = await lab.add_model_pods(1)
    assert set(lab.dataplane.model_servers) == {(NAMESPACE, healthy)}
    assert "--max-num-seqs must be an integer" in caplog.text


async def test_a_changed_listener_port_moves_the_gateway(lab):
    base_url = await lab.tutorial_setup()
    gateway = lab.store.get(*GATEWAY_KIND, NAMESPACE, GATEWAY)
    gateway["spec"]["listeners"][0]["port"] = 8081
    lab.store.replace(gateway)
    moved = f"http://{lab.gateway_ip}:8081"
    await eventually(lambda: lab.dataplane.gateways[(NAMESPACE, GATEWAY)].listeners[0].port == 8081)
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.post(f"{moved}/v1/chat/completions", json=HELLO)).status_code == 200
    assert not await reachable(base_url)


async def test_a_gateway_that_is_no_longer_programmed_stops_listening(lab):
    base_url = await lab.tutorial_setup()
    lab.store.update_status(
        *GATEWAY_KIND,
        NAMESPACE,
        GATEWAY,
        {"conditions": [{"type": "Programmed", "status": "False", "reason": "Invalid"}]},
    )
    await eventually(lambda: not lab.dataplane.gateways)
    assert not await reachable(base_url)


async def test_stop_closes_every_server(lab):
    base_url = await lab.tutorial_setup(replicas=2)
    pod_urls = [f"http://{lab.pod_ip(name)}:8000/health" for _, name in lab.dataplane.model_servers]
    await lab.dataplane.stop()
    for url in [base_url, *pod_urls]:
        assert not await reachable(url)


async def test_picker_mode_and_slowdown_are_validated(lab):
    with pytest.raises(ValueError, match="unknown picker mode"):
        lab.dataplane.set_picker(GATEWAY, "least_busy")
    with pytest.raises(ValueError, match="must be positive"):
        lab.dataplane.set_pod_slowdown("any-pod", 0)


async def test_picker_mode_survives_a_gateway_restart(lab):
    await lab.tutorial_setup()
    lab.dataplane.set_picker(GATEWAY, "round_robin")
    gateway = lab.store.get(*GATEWAY_KIND, NAMESPACE, GATEWAY)
    gateway["spec"]["listeners"][0]["port"] = 8082
    lab.store.replace(gateway)
    await eventually(lambda: lab.dataplane.gateways[(NAMESPACE, GATEWAY)].listeners[0].port == 8082)
    assert lab.dataplane.gateways[(NAMESPACE, GATEWAY)].picker.mode == "round_robin"
