"""Timing profiles: how long simulated work takes, in seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    cluster_provisioning: float
    operation: float
    crd_established: float
    pod_scheduling: float
    model_load: float
    gateway_programming: float
    # After a Gateway is deleted, GKE's Gateway controller removes its load balancer over minutes.
    lb_cleanup: float
    # GKE-managed CRDs (InferencePool v1) can reach discovery some time after the cluster is RUNNING.
    managed_crds_delay: float
    # Real GKE seconds per simulated second, for a profile that is real GKE scaled down (else None).
    real_gke_factor: float | None = None


# "realistic" divides the durations seen on real GKE by 60 (a 6 min cluster takes 6 s).
PROFILES: dict[str, Profile] = {
    "instant": Profile("instant", 0.3, 0.05, 0.0, 0.1, 0.3, 0.2, lb_cleanup=0.3, managed_crds_delay=0.0),
    "demo": Profile("demo", 4.0, 1.0, 0.5, 1.0, 4.0, 3.0, lb_cleanup=3.0, managed_crds_delay=1.0),
    "realistic": Profile(
        "realistic",
        6.0,
        0.5,
        0.2,
        1.0,
        5.0,
        3.0,
        lb_cleanup=4.0,
        managed_crds_delay=1.0,
        real_gke_factor=60.0,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
