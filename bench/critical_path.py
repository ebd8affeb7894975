"""Critical path: the DAG's wall time against what the work itself needs.

Two baselines, both from the same run and the sandbox's timing profile:
- the critical path of the intrinsic waits: the chain of waits no orchestration can shorten
  (the API operations before the cluster, cluster provisioning, then the longer of model pod
  start + load and CRDs + gateway programming, then the body-based router's pod);
- the tutorial's steps done one after another: every intrinsic wait spent outside a task
  (the four deferred waits) plus each tutorial task's own running time, as measured in the run.
  Operation and CRD waits happen inside running tasks, so their time is in the tasks' running time.
"""

from __future__ import annotations

from bench.timeline import RUNNING, RunRecord
from sandbox.core.profiles import Profile

# Task groups that are tutorial steps; the rest (plan_run, choose_mode, build, teardown,
# rebuild_after_teardown, run_report) is the DAG's own bookkeeping.
TUTORIAL_GROUPS = ("project_network", "cluster", "model_server", "gateway", "verify", "body_routing")
# Before the cluster: enable the APIs, create the VPC, then the two subnets side by side.
OPERATIONS_ON_CRITICAL_PATH = 3


def intrinsic_critical_path(profile: Profile) -> float:
    model_pods = profile.pod_scheduling + profile.model_load
    gateway = profile.crd_established + profile.gateway_programming
    body_router_pod = 2 * profile.pod_scheduling  # scheduled, then Ready (not a model server)
    return (
        OPERATIONS_ON_CRITICAL_PATH * profile.operation
        + profile.cluster_provisioning
        + max(model_pods, gateway)
        + body_router_pod
    )


def deferred_waits(profile: Profile) -> float:
    """The waits the DAG spends in deferrable sensors rather than inside a running task."""
    return (
        profile.cluster_provisioning
        + profile.pod_scheduling
        + profile.model_load
        + profile.gateway_programming
        + 2 * profile.pod_scheduling
    )


def tutorial_tasks(run: RunRecord) -> list[str]:
    return [task for task in run.timeline.transitions if task.split(".", 1)[0] in TUTORIAL_GROUPS]


def measure(run: RunRecord, profile: Profile) -> dict:
    running = {task: run.timeline.seconds_in(task, RUNNING) for task in tutorial_tasks(run)}
    own_time = sum(running.values())
    critical = intrinsic_critical_path(profile)
    one_after_another = deferred_waits(profile) + own_time
    return {
        "profile": profile.name,
        "dag_wall_s": run.wall_seconds,
        "intrinsic_critical_path_s": critical,
        "tutorial_tasks_running_s": own_time,
        "steps_one_after_another_s": one_after_another,
        "ratio_to_critical_path": run.wall_seconds / critical,
        "ratio_to_one_after_another": run.wall_seconds / one_after_another,
        "tutorial_tasks": len(running),
        "slowest_tasks_running_s": dict(sorted(running.items(), key=lambda item: -item[1])[:6]),
    }
