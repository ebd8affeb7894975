"""GKE version strings ("1.34.0-gke.1626000") parsed into comparable values.

The tutorial (2.2) picks the Inference Extension CRD set by the cluster's GKE version: from
1.34.0-gke.1626000 on, GKE serves the v1 InferencePool CRD itself and only the InferenceObjective
CRD is ours to install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

MANAGED_INFERENCE_POOL_SINCE = "1.34.0-gke.1626000"

_VERSION_PATTERN = re.compile(
    r"""^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?   # Kubernetes version
        (?:-gke\.(?P<gke>\d+))?$                               # GKE build, when present""",
    re.VERBOSE,
)


@total_ordering
@dataclass(frozen=True)
class GKEVersion:
    major: int
    minor: int
    patch: int
    gke_build: int

    @classmethod
    def parse(cls, text: str) -> GKEVersion:
        """Parse "1.34.0-gke.1626000"; a leading "v" and a missing patch or GKE build are accepted
        (a missing part counts as 0, so "1.34" sorts before every 1.34.x-gke.N build)."""
        match = _VERSION_PATTERN.match((text or "").strip())
        if match is None:
            raise ValueError(f"not a GKE version: {text!r} (expected e.g. '1.34.0-gke.1626000')")
        return cls(
            major=int(match["major"]),
            minor=int(match["minor"]),
            patch=int(match["patch"] or 0),
            gke_build=int(match["gke"] or 0),
        )

    def _key(self) -> tuple[int, int, int, int]:
        return (self.major, self.minor, self.patch, self.gke_build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GKEVersion):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}-gke.{self.gke_build}"


def serves_inference_pool_crd(cluster_version: str) -> bool:
    """True when GKE itself provides the v1 InferencePool CRD at this cluster version."""
    return GKEVersion.parse(cluster_version) >= GKEVersion.parse(MANAGED_INFERENCE_POOL_SINCE)
