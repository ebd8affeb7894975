"""The twin's seams: the protocols each part reads its sandbox or cluster through, the one loopback
address allocator, and an import graph without circles."""

from __future__ import annotations

import ast
import inspect
import types
import typing
from pathlib import Path

import pytest

from sandbox.admin import AdminHost
from sandbox.app import Sandbox
from sandbox.core.addresses import AddressPool
from sandbox.core.faults import FaultHost
from sandbox.dataplane.harness import DataPlaneHarness
from sandbox.dataplane.plane import DataPlaneHost, StoreHolder
from sandbox.gcp.hosts import ApiHost, ComputeHost, ContainerHost, GcpHost, IamCredentialsHost
from sandbox.hub.server import HubHost
from sandbox.kube.cluster import ClusterHost
from sandbox.kube.controllers.base import ControlledCluster, ControllerHost
from sandbox.kube.server import ServedCluster, TokenHost
from tests.sandbox.conftest import start_cluster

SANDBOX_PACKAGE = Path(__file__).resolve().parents[2] / "sandbox"

SANDBOX_PROTOCOLS = (
    FaultHost,
    ApiHost,
    ComputeHost,
    ContainerHost,
    GcpHost,
    IamCredentialsHost,
    HubHost,
    AdminHost,
    DataPlaneHost,
    ControllerHost,
    TokenHost,
    ClusterHost,
)
CLUSTER_PROTOCOLS = (ControlledCluster, ServedCluster, StoreHolder)


# -- protocol conformance, member by member -----------------------------------------------------------


def _protocol_classes(protocol: type) -> list[type]:
    return [k for k in protocol.__mro__ if getattr(k, "_is_protocol", False) and k is not typing.Protocol]


def _declared_members(protocol: type) -> dict[str, object]:
    """Attribute members as their resolved types, method members as their functions."""
    members: dict[str, object] = {}
    for klass in reversed(_protocol_classes(protocol)):
        members.update(typing.get_type_hints(klass))
        members.update({name: value for name, value in vars(klass).items() if inspect.isfunction(value)})
    return {name: member for name, member in members.items() if not name.startswith("_")}


def _conforms(value: object, expected: object) -> list[str]:
    if expected is typing.Any:
        return []
    if isinstance(expected, type) and getattr(expected, "_is_protocol", False):
        return _mismatches(value, expected)
    if isinstance(expected, types.UnionType) or typing.get_origin(expected) is typing.Union:
        options = [_conforms(value, option) for option in typing.get_args(expected)]
        return [] if any(not problems for problems in options) else [f"{value!r} is none of {expected}"]
    runtime_type = typing.get_origin(expected) or expected
    return [] if isinstance(value, runtime_type) else [f"{value!r} is not a {expected}"]


def _parameters(function: object) -> list[tuple[str, object]]:
    parameters = list(inspect.signature(function).parameters.values())
    return [(p.name, p.kind) for p in parameters if p.name != "self"]


def _mismatches(obj: object, protocol: type) -> list[str]:
    """Every way `obj` fails `protocol`: a missing member, a value of the wrong type, another signature."""
    problems = []
    for name, declared in _declared_members(protocol).items():
        where = f"{protocol.__name__}.{name}"
        if not hasattr(obj, name):
            problems.append(f"{where}: missing on {type(obj).__name__}")
        elif inspect.isfunction(declared):
            real = getattr(obj, name)
            if _parameters(real) != _parameters(declared):
                problems.append(f"{where}: takes {_parameters(real)}, the protocol {_parameters(declared)}")
            if inspect.iscoroutinefunction(real) != inspect.iscoroutinefunction(declared):
                problems.append(f"{where}: async on one side only")
        else:
            problems += [f"{where}: {problem}" for problem in _conforms(getattr(obj, name), declared)]
    return problems


def test_the_checker_notices_a_missing_member_a_wrong_type_and_another_signature():
    class Impostor:
        faults = "not a fault table"

        async def stop_kube_cluster(self, key: str, force: bool) -> None: ...

    problems = _mismatches(Impostor(), ContainerHost) + _mismatches(Impostor(), FaultHost)
    assert any("FaultHost.log: missing" in problem for problem in problems)
    assert any("FaultHost.faults:" in problem and "is not a" in problem for problem in problems)
    assert any("ContainerHost.stop_kube_cluster: takes" in problem for problem in problems)


def test_the_sandbox_and_its_clusters_satisfy_every_protocol_their_parts_read_them_through(sandbox):
    cluster = start_cluster(sandbox)
    try:
        problems = [problem for p in SANDBOX_PROTOCOLS for problem in _mismatches(sandbox.sandbox, p)]
        problems += [problem for p in CLUSTER_PROTOCOLS for problem in _mismatches(cluster, p)]
    finally:
        sandbox.call(cluster.stop)
    assert problems == []


async def test_the_harness_satisfies_what_the_data_plane_reads():
    async with DataPlaneHarness() as harness:
        host, cluster = harness.dataplane._sandbox, harness.dataplane._cluster
        assert _mismatches(host, DataPlaneHost) + _mismatches(cluster, StoreHolder) == []


def test_no_part_of_the_twin_takes_its_sandbox_or_cluster_untyped():
    untyped = []
    for path in SANDBOX_PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for argument in node.args.args + node.args.kwonlyargs:
                    annotation = ast.unparse(argument.annotation) if argument.annotation else None
                    if argument.arg in ("sandbox", "cluster") and annotation in (None, "Any"):
                        untyped.append(f"{path.relative_to(SANDBOX_PACKAGE)}:{node.lineno} {node.name}")
    assert untyped == []


# -- one loopback address allocator ------------------------------------------------------------------


async def test_sandboxes_and_harnesses_of_one_process_never_share_a_loopback_range():
    """The sandbox and the harness draw from the one AddressPool registry: each holds a /16 no other
    pool of the process holds, until every /16 is taken; a stopped harness gives its /16 back."""
    twin = Sandbox()
    pools = [twin.addresses]
    try:
        async with DataPlaneHarness() as harness:
            pools.append(harness.addresses)
            with pytest.raises(RuntimeError, match="every loopback /16"):
                for _ in range(260):
                    pools.append(AddressPool())
            octets = [pool.second_octet for pool in pools]
            assert len(set(octets)) == len(octets) > 200
        pools.append(AddressPool())
        assert pools[-1].second_octet == harness.addresses.second_octet
    finally:
        for pool in pools:
            pool.close()


# -- no import circle ----------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(SANDBOX_PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every sandbox module `path` imports, wherever the import stands (TYPE_CHECKING blocks and
    functions too); `from package import module` counts as importing that module only."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= submodules & modules or {node.module}
    return found & modules


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in SANDBOX_PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) - {name} for name, path in paths.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def test_the_controllers_and_the_api_server_never_import_the_cluster_that_composes_them():
    graph = _import_graph()
    for module in [name for name in graph if name.startswith("sandbox.kube.controllers")] + [
        "sandbox.kube.server"
    ]:
        assert "sandbox.kube.cluster" not in _reachable(graph, module), module
    assert {"sandbox.kube.controllers", "sandbox.kube.server"} <= graph["sandbox.kube.cluster"]


def test_no_module_of_the_twin_imports_itself_through_others():
    graph = _import_graph()
    circles = sorted(module for module in graph if module in _reachable(graph, module))
    assert circles == []
