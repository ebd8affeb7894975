"""GKE version strings such as "1.34.0-gke.1626000": parsing and ordering."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-gke\.(\d+))?$")


@dataclass(frozen=True, order=True)
class GkeVersion:
    major: int
    minor: int
    patch: int = 0
    gke_build: int = 0

    @classmethod
    def parse(cls, text: str) -> GkeVersion:
        match = _VERSION.match(text.strip())
        if match is None:
            raise ValueError(f"not a GKE version: {text!r} (expected e.g. 1.34.0-gke.1626000)")
        major, minor, patch, build = match.groups()
        return cls(int(major), int(minor), int(patch or 0), int(build or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}-gke.{self.gke_build}"


# From this GKE version on, the cluster itself serves the v1 InferencePool CRD.
BUILTIN_INFERENCE_POOL_SINCE = GkeVersion.parse("1.34.0-gke.1626000")


def serves_builtin_inference_pool(version: str) -> bool:
    return GkeVersion.parse(version) >= BUILTIN_INFERENCE_POOL_SINCE
