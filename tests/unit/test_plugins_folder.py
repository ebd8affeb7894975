"""The plugins manager must not import gke_inference's files as top-level modules."""

from pathlib import Path

from airflow._shared.module_loading import find_path_from_directory

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_the_plugins_manager_skips_the_package():
    scanned = [Path(path) for path in find_path_from_directory(str(PLUGINS), ".airflowignore", "glob")]
    inside_package = [path for path in scanned if "gke_inference" in path.parts and path.suffix == ".py"]
    # Without the ignore file, gke_inference/hooks/kubernetes.py would be loaded as `kubernetes`.
    assert inside_package == []
    assert (PLUGINS / "gke_inference" / "hooks" / "kubernetes.py").exists()
