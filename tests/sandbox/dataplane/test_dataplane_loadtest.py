"""The endpoint picker under load: a slowed replica gets clearly less traffic than round-robin gives it."""

from __future__ import annotations

from sandbox.dataplane.loadtest import benchmark, report


async def test_epp_sends_a_slow_replica_fewer_requests_than_round_robin():
    # 3 replicas with 4 sequences each for 8 clients: queues form on the slow one, as on a busy GPU.
    comparison = await benchmark(replicas=3, slowdown=5.0, requests=200, concurrency=8, max_num_seqs=4)

    for result in (comparison.round_robin, comparison.epp):
        assert result.statuses == {200: 200}
        assert len(result.by_pod) == 3
    assert abs(comparison.round_robin.share(comparison.slow_pod) - 1 / 3) < 0.02
    # The EPP, reading queue and KV-cache use, gives it about half of round-robin's share (metrics are
    # up to 50 ms stale, so picks herd a little, as in the real EPP).
    assert comparison.slow_share_ratio < 0.75, report(comparison)
    assert "round_robin" in report(comparison)
