"""The endpoint picker under load: a slowed replica gets clearly less traffic than round-robin gives it."""

from __future__ import annotations

from dataplane_lab import GATEWAY

from sandbox.dataplane.loadtest import compare_pickers


async def test_epp_sends_a_slow_replica_fewer_requests_than_round_robin(lab):
    # A small batch (4 sequences per replica for 8 clients) makes queues form, as on a busy GPU.
    base_url = await lab.tutorial_setup(replicas=3, args=lab.vllm_args(("--max-num-seqs", "4")))
    slow_pod = sorted(name for _, name in lab.dataplane.model_servers)[0]

    comparison = await compare_pickers(
        lab.dataplane, GATEWAY, base_url, slow_pod, slowdown=5.0, requests=200, concurrency=8
    )

    for result in (comparison.round_robin, comparison.epp):
        assert result.statuses == {200: 200}
        assert len(result.by_pod) == 3
    assert abs(comparison.round_robin.share(slow_pod) - 1 / 3) < 0.02
    # Round-robin gives the slow replica a third of the requests; the EPP, reading its queue and KV-cache
    # use, about half of that (metrics are up to 50 ms stale, so picks herd a little, as in the real EPP).
    assert comparison.slow_share_ratio < 0.75, (comparison.round_robin.by_pod, comparison.epp.by_pod)
