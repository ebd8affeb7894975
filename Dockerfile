# The production image: Airflow 3.3.2 (slim: no providers of its own) with the project's runtime lock,
# the gke_inference wheel and the DAG. The sandbox, the tests and the dev tools are not part of it
# (requirements/dev.txt is never copied; .dockerignore keeps the rest of the repo out).

# Stage 1: build the gke_inference wheel (the package, with include/manifests/ as its package data;
# src/gke_inference/manifests is a symlink to it, which COPY keeps and the build follows). As the
# image's user `airflow`, never root: the image puts a `pip` first on root's PATH that exits with "You
# are running pip as root" (apache/airflow Dockerfile: COPY --from=scripts pip /root/bin/pip).
FROM apache/airflow:slim-3.3.2-python3.11 AS wheel
COPY --chown=airflow:0 pyproject.toml /opt/airflow/build/
COPY --chown=airflow:0 src/ /opt/airflow/build/src/
COPY --chown=airflow:0 include/manifests/ /opt/airflow/build/include/manifests/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /opt/airflow/build

# Stage 2: Airflow, the runtime lock, the wheel (its dependencies are already in the lock) and dags/.
FROM apache/airflow:slim-3.3.2-python3.11

ARG AIRFLOW_VERSION=3.3.2

COPY --chown=airflow:0 requirements/runtime.txt /requirements.txt
# Re-pin Airflow so the lock can never move it up or down.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt

COPY --from=wheel /tmp/dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/*.whl

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
