"""The gke_inference wheel, built as a deployment builds it (`uv build --wheel`, hatchling): it carries
every template the DAG renders, no test or sandbox code, and declares every distribution it imports,
at versions the runtime lock satisfies. tests/stack/test_wheel_install.py installs it in a clean venv.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gke_inference import manifests
from gke_inference.operators.crds import CRD_SETS
from gke_inference.operators.workloads import WORKLOAD_MANIFESTS
from gke_inference.validation import BUILD_MANIFESTS
from tests.test_packaging import RUNTIME_LOCK, locked_versions

REPO = Path(__file__).resolve().parent.parent
SOURCE_MANIFESTS = REPO / "include" / "manifests"
PACKAGE = REPO / "src" / "gke_inference"
WHEEL_MANIFESTS = "gke_inference/manifests/"
# apache-airflow is a meta-package: Airflow's modules live in the two distributions it pins exactly.
AIRFLOW_PARTS = {"apache-airflow-core", "apache-airflow-task-sdk"}
BUILD_TIMEOUT_S = 120
# The uv that `make setup` installs (Makefile: UV := python3 -m uv); the venv itself has none.
UV = ("python3", "-m", "uv")


def build_wheel(out_dir: Path) -> Path:
    """The package's wheel, built from the repo by uv (the Makefile's uv) with the pinned hatchling."""
    subprocess.run(
        [*UV, "build", "--wheel", "--quiet", "-o", str(out_dir), str(REPO)],
        check=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (wheel,) = out_dir.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    with zipfile.ZipFile(build_wheel(tmp_path_factory.mktemp("wheel"))) as built:
        yield built


@pytest.fixture(scope="module")
def wheel_metadata(wheel):
    (name,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode())


def manifest_names_the_dag_uses() -> set[str]:
    """What the DAG's tasks apply or delete, plus the operators' and the pre-flight's own lists."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    tasks = bag.dags["gke_inference_gateway"].tasks
    from_tasks = {name for task in tasks for name in getattr(task, "manifests", ())}
    assert from_tasks, "no task of the DAG names a manifest: the DAG no longer applies templates this way"
    return (
        from_tasks
        | set(WORKLOAD_MANIFESTS)
        | set(BUILD_MANIFESTS)
        | {m for s in CRD_SETS.values() for m in s}
    )


def referenced_templates(template: str) -> set[str]:
    """The template and every template it imports or includes (e.g. inferencepool/_names.j2), recursively."""
    env = jinja2.Environment()
    found, pending = set(), [template]
    while pending:
        name = pending.pop()
        found.add(name)
        parsed = env.parse((SOURCE_MANIFESTS / name).read_text())
        pending += [ref for ref in jinja2.meta.find_referenced_templates(parsed) if ref not in found]
    return found


def templates_the_dag_renders() -> set[str]:
    paths = {
        path
        for name in manifest_names_the_dag_uses()
        for path in manifests.template_paths(name, root=SOURCE_MANIFESTS)
    }
    return {ref for path in paths for ref in referenced_templates(path)}


def test_the_wheel_carries_every_template_the_dag_renders_as_in_include_manifests(wheel):
    templates = templates_the_dag_renders()
    assert "inferencepool/_names.j2" in templates, "the helper templates are followed too"
    missing = sorted(t for t in templates if WHEEL_MANIFESTS + t not in wheel.namelist())
    assert missing == [], f"templates the DAG renders but the wheel lacks: {missing}"
    changed = [t for t in templates if wheel.read(WHEEL_MANIFESTS + t) != (SOURCE_MANIFESTS / t).read_bytes()]
    assert changed == [], "the wheel's templates differ from include/manifests/"


def test_the_wheel_holds_the_whole_package_and_nothing_else(wheel):
    names = [name for name in wheel.namelist() if not name.endswith("/")]
    package_modules = {f"gke_inference/{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")}
    assert package_modules - set(names) == set(), "modules of src/gke_inference missing from the wheel"
    strays = [
        name
        for name in names
        if not (name.startswith("gke_inference/") or name.split("/")[0].endswith(".dist-info"))
        or {"tests", "sandbox", "scripts", "conftest.py", "__pycache__"} & set(name.split("/"))
        or name.endswith(".pyc")
    ]
    assert strays == [], f"the wheel carries more than the package: {strays}"


def imported_modules() -> set[str]:
    """Every absolute import in src/gke_inference; for `from a import b` both `a.b` and `a`."""
    modules = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names | {"gke_inference"}}


def distributions_by_file() -> dict[str, str]:
    """site-packages-relative module file -> the installed distribution that owns it (its RECORD)."""
    owners = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        records = (line.split(",", 1)[0] for line in (dist.read_text("RECORD") or "").splitlines())
        owners.update((path, name) for path in records if path.endswith(".py"))
    return owners


def owning_distribution(module: str, owners: dict[str, str]) -> str | None:
    path = module.replace(".", "/")
    return owners.get(f"{path}/__init__.py") or owners.get(f"{path}.py")


def imported_distributions() -> dict[str, set[str]]:
    """Distribution -> the modules of it that the package imports (namespace packages such as
    google.cloud own no file: the module imported from them names the distribution)."""
    owners, found = distributions_by_file(), {}
    for module in imported_modules():
        if dist := owning_distribution(module, owners):
            found.setdefault(dist, set()).add(module)
    return found


def declared(wheel_metadata) -> dict[str, Requirement]:
    requirements = [Requirement(text) for text in wheel_metadata.get_all("Requires-Dist")]
    return {canonicalize_name(req.name): req for req in requirements}


def test_every_distribution_the_package_imports_is_declared(wheel_metadata):
    imported = imported_distributions()
    assert {"kubernetes", "apache-airflow-providers-google", "google-cloud-compute"} <= set(imported)
    declared_names = set(declared(wheel_metadata))
    if "apache-airflow" in declared_names:
        declared_names |= AIRFLOW_PARTS
    undeclared = {dist: sorted(modules) for dist, modules in imported.items() if dist not in declared_names}
    assert undeclared == {}, (
        f"imported by src/gke_inference but not in pyproject's dependencies: {undeclared}"
    )


def test_every_declared_dependency_is_in_the_runtime_lock_at_a_version_it_allows(wheel_metadata):
    pins = {canonicalize_name(name): version for name, version in locked_versions(RUNTIME_LOCK).items()}
    outside = {
        name: (str(req.specifier), pins.get(name))
        for name, req in declared(wheel_metadata).items()
        if name not in pins or not req.specifier.contains(pins[name])
    }
    assert outside == {}, f"declared by the wheel but not locked in {RUNTIME_LOCK.name}, or locked outside"


def providers_airflow_core_requires() -> set[str]:
    requirements = [Requirement(line) for line in metadata.requires("apache-airflow-core") or []]
    return {
        canonicalize_name(req.name)
        for req in requirements
        if req.name.startswith("apache-airflow-providers-") and req.marker is None
    }


def guide_code_block(after: str, fence: str) -> str:
    """The first ```fence block after the text `after` in docs/real-project.md."""
    guide = (REPO / "docs" / "real-project.md").read_text()
    return guide.split(after, 1)[1].split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def test_the_guides_astro_steps_pin_the_runtime_lock_and_install_the_built_wheel(wheel, wheel_metadata):
    pins = {canonicalize_name(name): version for name, version in locked_versions(RUNTIME_LOCK).items()}
    block = guide_code_block("`requirements.txt`: the providers and clients the runtime lacks", "text")
    listed = {
        canonicalize_name(name): version for name, version in (line.split("==") for line in block.split())
    }
    assert {name: version for name, version in listed.items() if pins.get(name) != version} == {}
    # Astro Runtime brings Airflow and the providers Airflow's core requires (smtp, standard, ...);
    # every other provider the wheel needs is listed.
    providers = {name for name in declared(wheel_metadata) if name.startswith("apache-airflow-providers-")}
    assert providers - providers_airflow_core_requires() <= set(listed)
    assert set(listed) <= set(declared(wheel_metadata)), "only what the package declares"
    assert Path(wheel.filename).name in guide_code_block("wheel after it", "dockerfile")
