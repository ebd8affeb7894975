# The production image: Airflow 3.3.2 with the project's pinned lock, the DAG, its plugins and manifests.
# The sandbox and the tests are not part of it.
FROM apache/airflow:3.3.2-python3.11

ARG AIRFLOW_VERSION=3.3.2

COPY --chown=airflow:0 requirements.txt /requirements.txt
# Re-pin Airflow so the lock can never move it up or down.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
