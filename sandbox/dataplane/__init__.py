"""The sandbox's data plane: vLLM-compatible model servers for Ready pods and inference gateways for
programmed Gateways, all on loopback addresses the cluster's controllers hand out."""

from sandbox.dataplane.plane import DataPlane

__all__ = ["DataPlane"]
