"""The verified endpoint as an Asset: the run report announces it, the teardown marks it gone, and
the example consumer DAG load-tests the gateway named in the event (against the sandbox)."""

from __future__ import annotations

from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk import DAG, Asset
from airflow.sdk.exceptions import AirflowSkipException

from gke_inference.endpoint_asset import ENDPOINT_ALIAS, GONE, UP, announce_gone, endpoint_asset
from gke_inference.operators.load_test import GatewayLoadTestOperator, endpoint_event
from gke_inference.operators.report import RunReportOperator
from tests.conftest import REPO
from tests.plugins.conftest import kube_cluster, namespace_factory  # noqa: F401
from tests.plugins.test_checks import DEFAULTS, serve

CHAT = "/v1/chat/completions"
API_USER, API_PASSWORD = "reporter", "reporter-pw-7f3a"


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory):
    """Airflow's real REST API (the api-server's core app) on loopback, on this test's metadata DB,
    with a user allowed to edit runs, and the ``airflow_api`` connection the run report uses."""
    import json
    import threading
    import time

    import uvicorn

    from tests.ui.conftest import free_port

    passwords = tmp_path_factory.mktemp("api") / "passwords.json"
    passwords.write_text(json.dumps({API_USER: API_PASSWORD}))
    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{API_USER}:admin")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        from airflow.api_fastapi.app import create_app

        server = uvicorn.Server(
            uvicorn.Config(create_app(apps="core"), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "the api-server did not start"
            time.sleep(0.1)
        connection = {"conn_type": "http", "host": url, "login": API_USER, "password": API_PASSWORD}
        env.setenv("AIRFLOW_CONN_AIRFLOW_API", json.dumps(connection))
        yield url
        server.should_exit = True
        thread.join(timeout=30)


def announced(plan: dict) -> list[dict]:
    """The extras of the Asset events for the plan's endpoint, oldest first (metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    uri = endpoint_asset(plan).uri
    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        )
        return list(session.scalars(query))


def plan_for(cluster, namespace: str) -> dict:
    return {
        **DEFAULTS,
        "project_id": cluster.project_id,
        "region": cluster.location,
        "cluster_name": cluster.cluster_name,
        "namespace": namespace,
        "mode": "ensure",
        "gateway_port": 80,
    }


def test_the_endpoint_uri_names_project_region_cluster_and_gateway():
    plan = {"project_id": "p-1", "region": "us-central1", "cluster_name": "c1", "namespace": "ns"}
    asset = endpoint_asset({**plan, "gateway_name": "gw"})
    assert asset.uri == "x-gke-inference-gateway://p-1/us-central1/c1/ns/gw"
    # Airflow keeps an x- URI as written (no normalizer would rewrite it at registration).
    assert Asset(uri=asset.uri).uri == asset.uri


class Events(dict):
    """outlet_events as a task sees it: ``events[alias].add(asset, extra=...)``."""

    def __missing__(self, alias):
        added = self[alias] = SimpleNamespace(added=[])
        added.add = lambda asset, extra: added.added.append((asset, extra))
        return added


def test_the_teardown_marks_the_endpoint_gone_and_records_its_timing():
    plan = {**DEFAULTS, "project_id": "p-1", "region": "r", "cluster_name": "c", "namespace": "n"}
    pushed = {}
    ti = SimpleNamespace(
        task_id="teardown.delete_network",
        start_date=None,
        xcom_pull=lambda task_ids, key=None: plan if task_ids == "plan_run" else None,
        xcom_push=lambda key, value: pushed.update({key: value}),
    )
    events = Events()
    announce_gone({"ti": ti, "run_id": "r1", "outlet_events": events})
    [(asset, extra)] = events[ENDPOINT_ALIAS].added
    assert asset == endpoint_asset(plan)
    assert extra == {"state": GONE, "run_id": "r1"}
    assert "timing" in pushed


def test_a_gone_endpoint_skips_the_load_test():
    gone = SimpleNamespace(
        asset=SimpleNamespace(uri="x-gke-inference-gateway://p/r/c/n/g"), extra={"state": GONE}
    )
    context = {"triggering_asset_events": {ENDPOINT_ALIAS: [gone]}, "inlet_events": {}}
    with pytest.raises(AirflowSkipException, match="is gone"):
        GatewayLoadTestOperator(task_id="load_test").execute(context)


def test_the_triggering_event_wins_over_the_latest_announced():
    triggering, latest = object(), object()
    context = {
        "triggering_asset_events": {ENDPOINT_ALIAS: [triggering]},
        "inlet_events": {ENDPOINT_ALIAS: [latest]},
    }
    assert endpoint_event(context) is triggering
    assert (
        endpoint_event({"triggering_asset_events": {}, "inlet_events": {ENDPOINT_ALIAS: [latest]}}) is latest
    )


def serialize(dags, empty_folder) -> None:
    """Write DAGs to the metadata DB as the dag-processor does a file's; the unpaused ones only
    get queued by asset events."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    DagBundlesManager().sync_bundles_to_db()  # a fresh DB has no "dags-folder" bundle row yet
    bag = DagBag(dag_folder=str(empty_folder))
    bag.dags.update({dag.dag_id: dag for dag in dags})
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        session.execute(
            update(DagModel).where(DagModel.dag_id.in_([d.dag_id for d in dags])).values(is_paused=False)
        )


def run_note(api_url: str, dag_id: str, run_id: str) -> str | None:
    """The run's note as the UI reads it: GET /api/v2/dags/{dag_id}/dagRuns/{run_id}."""
    import urllib.parse

    import httpx

    token = httpx.post(f"{api_url}/auth/token", json={"username": API_USER, "password": API_PASSWORD})
    run = urllib.parse.quote(run_id, safe="")
    response = httpx.get(
        f"{api_url}/api/v2/dags/{dag_id}/dagRuns/{run}",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    response.raise_for_status()
    return response.json()["note"]


@pytest.mark.dag
def test_a_verified_endpoint_is_announced_and_load_tested_through_its_gateway(
    kube_cluster,  # noqa: F811
    namespace_factory,  # noqa: F811
    sandbox,
    tmp_path,
    airflow_api,
):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    namespace = namespace_factory(kube_cluster, "asset")
    address = serve(kube_cluster, namespace, body_routing=False)
    plan = plan_for(kube_cluster, namespace)
    consumer = DagBag(dag_folder=str(REPO / "dags" / "gke_inference_load_test.py")).dags[
        "gke_inference_load_test"
    ]

    # The real report task with the checks' results, as the last task of a verified run.
    with DAG("endpoint_asset_producer", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as producer:
        RunReportOperator(
            task_id="run_report",
            plan=plan,
            gateway_address=address,
            chat={"status": 200, "reply": "hi", "pod": "vllm-0"},
            rejection={"status": 404},
            outlets=[ENDPOINT_ALIAS],
        )
    serialize([producer, consumer], tmp_path)
    produced = producer.test()
    assert produced.state == "success"
    note = run_note(airflow_api, producer.dag_id, produced.run_id)
    assert note.startswith(f"### Run report: ensure of `{plan['project_id']}`"), note
    assert f"- **Endpoint:** http://{address}:80" in note and "HTTP 404, rejected" in note
    uri = endpoint_asset(plan).uri
    with create_session() as session:
        event = session.scalars(
            select(AssetEvent)
            .where(AssetEvent.source_dag_id == "endpoint_asset_producer")
            .order_by(AssetEvent.id.desc())
        ).first()
        assert event.asset.uri == uri
        assert event.extra["state"] == UP
        assert event.extra["gateway_url"] == f"http://{address}:80"
        assert event.extra["model"] == DEFAULTS["model_name"]
        assert event.extra["gke_version"] is None  # no cluster wait in this one-task DAG
        queued = session.scalars(
            select(AssetDagRunQueue.target_dag_id).where(AssetDagRunQueue.asset_id == event.asset_id)
        ).all()
    # A DAG scheduled on the alias is queued by an event attached to it.
    assert "gke_inference_load_test" in queued

    before = len(sandbox.requests("gateway"))
    run = consumer.test(run_conf={"requests": 6, "concurrency": 3})
    assert run.state == "success"
    chats = [e for e in sandbox.requests("gateway")[before:] if e["method"] == "POST" and e["path"] == CHAT]
    assert len(chats) == 6 and {e["status"] for e in chats} == {200}


def announced_for(report: dict) -> list[dict]:
    """The events for a run report's endpoint on the DAG's default names."""
    return announced({**DEFAULTS, "project_id": report["project_id"]})
