"""Environments as data: each YAML definition becomes its own DAG, ``gke_inference_gateway__<name>``.

A definition file in the environments directory (``GKE_INFERENCE_ENVIRONMENTS_DIR``, else
``environments/`` beside the DAG file) holds one environment as a mapping, or several under
``environments:``::

    name: staging                # [a-z][a-z0-9-]*, at most 30 characters
    description: Kept up, repaired nightly
    schedule: "0 3 * * *"        # cron or preset; omitted or "none": manual runs only
    schedule_mode: ensure        # what a scheduled run does: rebuild or ensure
    params: {region: europe-west4, cluster_name: staging-cluster, keep_for_hours: 0}
    notify: {smtp_conn_id: smtp_default, email_to: "a@example.com", webhook_conn_id: "", ...}

Everything is checked when the DAG file is parsed; a wrong definition is an import error naming the
file and the field, and no DAG of that file is built. The params that name an environment's objects
(project, region, VPC, cluster) are pinned in its DAG (a JSON-schema ``const``), so a manual run of
one environment cannot be pointed at another's cluster; two definitions naming the same cluster or
the same VPC of a project are refused.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gke_inference.notifications import NotifySettings
from gke_inference.ownership import environment_dag_id
from gke_inference.params import SCHEDULE_MODES, build_params, schedule_mode

ENVIRONMENTS_DIR_ENV = "GKE_INFERENCE_ENVIRONMENTS_DIR"
SCHEDULE_ENV = "GKE_INFERENCE_SCHEDULE"  # the DAG of no definition's schedule; "none": manual only
NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?$")
FIELDS = ("name", "description", "schedule", "schedule_mode", "params", "notify")
NOTIFY_FIELDS = tuple(field.name for field in dataclasses.fields(NotifySettings))
# What identifies an environment's objects: pinned in its DAG, and never shared by two definitions.
PINNED_PARAMS = ("project_id", "region", "network_name", "cluster_name")


class EnvironmentDefinitionError(ValueError):
    """A definition that cannot become a DAG; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Environment:
    """One definition; ``name`` None is the DAG of no definition (``gke_inference_gateway``)."""

    name: str | None
    source: Path | None
    params: dict[str, Any]
    schedule: str | None = None
    schedule_mode: str = "rebuild"
    notify: NotifySettings | None = None  # None: the deployment's GKE_INFERENCE_NOTIFY_* settings
    description: str = ""

    @property
    def dag_id(self) -> str:
        return environment_dag_id(self.name)

    @property
    def tags(self) -> list[str]:
        return [] if self.name is None else [f"env:{self.name}"]


def without_definition() -> Environment:
    """Today's single DAG: the schedule and what a scheduled run does from the deployment's
    environment, read at parse time (never from the metadata DB)."""
    schedule = os.environ.get(SCHEDULE_ENV, "@weekly")
    return Environment(
        name=None,
        source=None,
        params={},
        schedule=None if schedule.lower() == "none" else schedule,
        schedule_mode=schedule_mode(),
    )


def defined_or_default(directory: str | Path) -> list[Environment]:
    """The environments defined in ``directory`` (or ``GKE_INFERENCE_ENVIRONMENTS_DIR``); with
    none, the DAG of no definition."""
    return load(environments_dir(directory)) or [without_definition()]


def environments_dir(default: str | Path) -> Path:
    """``GKE_INFERENCE_ENVIRONMENTS_DIR`` if set (it must be a folder: a mistyped path would quietly
    bring back the DAG of no definition and its weekly rebuild), else ``default``."""
    named = os.environ.get(ENVIRONMENTS_DIR_ENV)
    if named and not Path(named).is_dir():
        raise EnvironmentDefinitionError(f"{ENVIRONMENTS_DIR_ENV} is {named!r}, which is not a folder")
    return Path(named or default)


def load(directory: Path) -> list[Environment]:
    """Every environment defined in ``directory``'s ``*.yaml`` / ``*.yml`` files, in file order;
    none when the directory does not exist or holds no definition."""
    if not directory.is_dir():
        return []
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    environments = [env for path in files for env in _load_file(path)]
    _refuse_collisions(environments)
    return environments


def _load_file(path: Path) -> list[Environment]:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EnvironmentDefinitionError(f"{path}: not valid YAML: {exc}") from None
    if document is None:
        return []
    if isinstance(document, Mapping) and set(document) == {"environments"}:
        entries = document["environments"]
        if not isinstance(entries, list):
            raise EnvironmentDefinitionError(f"{path}: environments: must be a list of definitions")
        return [_environment(entry, path, f"environments[{index}].") for index, entry in enumerate(entries)]
    return [_environment(document, path, "")]


def _environment(entry: Any, path: Path, at: str) -> Environment:
    def fail(field: str, problem: str) -> EnvironmentDefinitionError:
        return EnvironmentDefinitionError(f"{path}: {at}{field}: {problem}")

    if not isinstance(entry, Mapping):
        where = at.rstrip(".") or "the file"
        raise EnvironmentDefinitionError(f"{path}: {where}: a definition must be a mapping with a name")
    unknown = sorted(str(key) for key in entry if key not in FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field; the fields are: {', '.join(FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise fail("name", f"{name!r} is not a name: lowercase letters, digits and '-', at most 30")
    return Environment(
        name=name,
        source=path,
        params=_params(entry.get("params") or {}, fail),
        schedule=_schedule(entry.get("schedule"), fail),
        schedule_mode=_schedule_mode(entry.get("schedule_mode"), fail),
        notify=_notify(entry.get("notify"), fail),
        description=str(entry.get("description") or ""),
    )


def _params(overrides: Any, fail) -> dict[str, Any]:
    """The overrides, each checked against its Param's schema, then all of them together with the
    defaults, as the run's first task checks a run's params."""
    from airflow.sdk.definitions.param import Param, ParamValidationError

    from gke_inference.validation import InvalidParams, unknown_key_problems, validate_params

    if not isinstance(overrides, Mapping):
        raise fail("params", "must be a mapping of param name to value")
    declared = build_params()
    unknown = unknown_key_problems(overrides, declared)
    if unknown:
        raise fail("params", unknown[0])
    for key, value in overrides.items():
        try:
            Param(value, declared[key].description, schema=declared[key].schema).resolve()
        except ParamValidationError as exc:
            raise fail(f"params.{key}", str(exc).splitlines()[0]) from None
    merged = {key: param.value for key, param in declared.items()} | dict(overrides)
    try:
        validate_params(merged)
    except InvalidParams as exc:
        raise fail("params", str(exc)) from None
    return dict(overrides)


def _schedule(schedule: Any, fail) -> str | None:
    if schedule is None or (isinstance(schedule, str) and schedule.strip().lower() == "none"):
        return None
    if not isinstance(schedule, str):
        raise fail("schedule", f"{schedule!r} is not a cron expression or preset such as @weekly")
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

    try:
        CronTriggerTimetable(schedule, timezone="UTC").validate()
    except Exception as exc:
        raise fail("schedule", f"{schedule!r}: {exc}") from None
    return schedule


def _schedule_mode(mode: Any, fail) -> str:
    if mode is None:
        return schedule_mode()  # the deployment's GKE_INFERENCE_SCHEDULE_MODE
    if mode not in SCHEDULE_MODES:
        raise fail("schedule_mode", f"{mode!r}; use one of {', '.join(SCHEDULE_MODES)}")
    return mode


def _notify(notify: Any, fail) -> NotifySettings | None:
    """None: the deployment's notification settings; a mapping: this environment's own, in full."""
    if notify is None:
        return None
    if not isinstance(notify, Mapping):
        raise fail("notify", f"must be a mapping of {', '.join(NOTIFY_FIELDS)}")
    unknown = sorted(str(key) for key in notify if key not in NOTIFY_FIELDS)
    if unknown:
        raise fail(f"notify.{unknown[0]}", f"unknown field; the fields are: {', '.join(NOTIFY_FIELDS)}")
    for key in ("smtp_conn_id", "email_to", "webhook_conn_id"):
        if not isinstance(notify.get(key, ""), str):
            raise fail(f"notify.{key}", "must be a string")
    if not isinstance(notify.get("on_scheduled_success", False), bool):
        raise fail("notify.on_scheduled_success", "must be true or false")
    minutes = notify.get("deadline_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1):
        raise fail("notify.deadline_minutes", f"{minutes!r} is not a whole number of minutes >= 1")
    return NotifySettings(**notify)


def _refuse_collisions(environments: list[Environment]) -> None:
    """Two environments may share a project, never a name, a cluster or a VPC."""
    defaults = {key: param.value for key, param in build_params().items()}
    seen: dict[tuple, Environment] = {}
    for env in environments:
        values = defaults | env.params
        # No project given: the connection's project, so the connection stands for it.
        project = values["project_id"] or f"the project of connection {values['gcp_conn_id']}"
        keys = {
            ("name", env.name): f"the name {env.name!r}",
            ("cluster", project, values["region"], values["cluster_name"]): (
                f"cluster {values['cluster_name']!r} in {values['region']} of {project}"
            ),
            ("network", project, values["network_name"]): f"VPC {values['network_name']!r} of {project}",
        }
        for key, what in keys.items():
            other = seen.setdefault(key, env)
            if other is not env:
                raise EnvironmentDefinitionError(
                    f"{env.source}: environment {env.name!r} has {what}, as environment {other.name!r} "
                    f"({other.source}) has: give each environment its own"
                )


def dag_params(environment: Environment) -> dict:
    """The DAG's params: the defaults, with an environment's overrides as defaults and the params
    that name its objects pinned."""
    from airflow.sdk.definitions.param import Param

    params = build_params()
    if environment.name is None:
        return params
    for key, value in environment.params.items():
        params[key] = Param(value, params[key].description, schema=params[key].schema)
    for key in PINNED_PARAMS:
        param = params[key]
        description = f"{param.description} Fixed for environment {environment.name}."
        params[key] = Param(param.value, description, schema={**param.schema, "const": param.value})
    return params
