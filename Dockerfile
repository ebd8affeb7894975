# The production image: Airflow 3.3.2 (slim: no providers of its own) with the project's runtime lock,
# the DAG, its plugins and manifests. The sandbox, the tests and the dev tools are not part of it
# (requirements/dev.txt is never copied; .dockerignore keeps the rest of the repo out).
FROM apache/airflow:slim-3.3.2-python3.11

ARG AIRFLOW_VERSION=3.3.2

COPY --chown=airflow:0 requirements/runtime.txt /requirements.txt
# Re-pin Airflow so the lock can never move it up or down.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
