"""Simulated controllers: they give objects the status a GKE cluster's controllers would."""

from __future__ import annotations

from sandbox.kube.controllers.base import ControlledCluster, Controller
from sandbox.kube.controllers.crds import CrdController
from sandbox.kube.controllers.deployments import DeploymentController, ReplicaSetController
from sandbox.kube.controllers.gateways import GatewayClassController, GatewayController
from sandbox.kube.controllers.pods import PodController
from sandbox.kube.controllers.pools import InferencePoolController
from sandbox.kube.controllers.routes import HttpRouteController

CONTROLLER_TYPES: tuple[type[Controller], ...] = (
    CrdController,
    DeploymentController,
    ReplicaSetController,
    PodController,
    GatewayClassController,
    GatewayController,
    HttpRouteController,
    InferencePoolController,
)


def all_controllers(cluster: ControlledCluster) -> list[Controller]:
    return [controller_type(cluster) for controller_type in CONTROLLER_TYPES]
