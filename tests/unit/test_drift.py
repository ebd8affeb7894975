"""The plan's field comparison (gke_inference.drift): only what the desired object sets counts."""

from __future__ import annotations

from gke_inference.drift import ABSENT, Difference, describe, differences

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "vllm", "namespace": "default", "labels": {"app": "vllm"}},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "image": "vllm/vllm-openai:v0.8.5",
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    },
                    {"name": "sidecar", "image": "busybox"},
                ]
            }
        },
    },
}


def live(**changes) -> dict:
    """The Deployment as the API server answers it: everything set, plus what the server fills in."""
    import copy

    obj = copy.deepcopy(DEPLOYMENT)
    obj["metadata"].update(uid="1234", resourceVersion="7", labels={"app": "vllm", "added-by": "server"})
    obj["status"] = {"readyReplicas": 1}
    containers = obj["spec"]["template"]["spec"]["containers"]
    containers[0].update(imagePullPolicy="IfNotPresent", resources={"limits": {"nvidia.com/gpu": "1"}})
    containers.reverse()  # matched by name, not by position
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = obj
        for key in parents:
            target = target[key]
        target[last] = value
    return obj


def test_what_the_server_fills_in_is_not_a_difference():
    assert differences(DEPLOYMENT, live()) == []


def test_a_changed_field_names_its_path_have_and_want():
    assert differences(DEPLOYMENT, live(spec__replicas=3)) == [Difference("spec.replicas", 3, 1)]


def test_containers_are_matched_by_name():
    drifted = live()
    drifted["spec"]["template"]["spec"]["containers"][1]["image"] = "vllm/vllm-openai:v0.9.0"
    assert [str(d) for d in differences(DEPLOYMENT, drifted)] == [
        "spec.template.spec.containers[vllm].image: 'vllm/vllm-openai:v0.9.0' -> 'vllm/vllm-openai:v0.8.5'"
    ]


def test_a_missing_field_is_absent_and_a_shorter_list_differs_whole():
    drifted = live()
    del drifted["metadata"]["labels"]["app"]
    drifted["spec"]["template"]["spec"]["containers"].pop()
    found = differences(DEPLOYMENT, drifted)
    assert found[0] == Difference("metadata.labels.app", ABSENT, "vllm")
    assert found[1].field == "spec.template.spec.containers"
    assert str(found[0]) == "metadata.labels.app: absent -> 'vllm'"


def test_a_quantity_answered_as_a_string_is_the_same_but_a_flag_is_not_a_number():
    assert differences({"limit": 1}, {"limit": "1"}) == []
    assert differences({"enabled": True}, {"enabled": 1}) == [Difference("enabled", 1, True)]
    assert differences({"count": 1}, {"count": "2"}) == [Difference("count", "2", 1)]


def test_a_name_answered_as_a_url_is_the_same_name():
    url = "https://www.googleapis.com/compute/v1/projects/p/regions/us-central1"
    assert differences({"region": "us-central1"}, {"region": url}) == []
    assert differences({"region": "us-east1"}, {"region": url}) == [Difference("region", url, "us-east1")]


def test_long_values_are_cut_in_the_description():
    found = differences({"prompt": "x" * 200}, {"prompt": "y"})
    text = describe("ConfigMap/default/c", found)
    assert text.startswith("ConfigMap/default/c (prompt: 'y' -> 'xxx")
    assert text.endswith("…)") and len(text) < 120
