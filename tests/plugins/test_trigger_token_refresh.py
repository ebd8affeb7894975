"""A deferred wait whose access token stops being accepted (revoked, or expired early) goes on.

The twin refuses a revoked token with 401 (sandbox.core.auth.TokenAuthority.revoke, as Google does
after a revocation); the trigger's hook fetches a new token and its polls go on, so the wait ends
with its own verdict (here: the deadline), never a failure about credentials.
"""

from __future__ import annotations

import asyncio
import threading
import time

from gke_inference.triggers.kubernetes import PodsReadyTrigger

REVOKE_AFTER = 1.0
WAIT = 3.0


def revoke_every_token(sandbox) -> None:
    """Every token minted through /token; the session's kubeconfig token (info["access_token"]),
    which the other tests of the shared sandbox use, is spared."""
    authority = sandbox.sandbox.tokens
    spared = sandbox.info["access_token"]
    minted = [token for token in authority.minted() if token != spared]
    sandbox.run(lambda: [authority.revoke(token) for token in minted])


def run_to_event(trigger) -> dict:
    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), WAIT + 20))


def test_pods_trigger_refreshes_a_revoked_token_and_keeps_polling(sandbox, kube_cluster, namespace):
    now = time.time()
    trigger = PodsReadyTrigger(
        **kube_cluster.kwargs,
        namespace=namespace,
        label_selector="app=nothing-here",
        replicas=1,
        started_at=now,
        deadline=now + WAIT,
        poll_interval=0.2,
    )
    revoker = threading.Timer(REVOKE_AFTER, revoke_every_token, args=(sandbox,))
    revoker.start()
    try:
        event = run_to_event(trigger)
    finally:
        revoker.cancel()
    revoked_at = now + REVOKE_AFTER

    assert event["status"] == "timeout", event
    polls = [
        entry
        for entry in sandbox.requests("kube")
        if entry["ts"] >= revoked_at and entry["path"].endswith(f"/namespaces/{namespace}/pods")
    ]
    statuses = [entry["status"] for entry in polls]
    assert 401 in statuses, f"the revocation was never seen: {statuses}"
    refused_at = polls[statuses.index(401)]["ts"]
    assert 200 in statuses[statuses.index(401) :], f"no poll succeeded after the 401: {statuses}"
    tokens = [e for e in sandbox.requests("oauth") if e["ts"] >= refused_at and e["path"] == "/token"]
    assert [e["status"] for e in tokens][:1] == [200], "no new token was fetched after the 401"
