"""`[core] hostname_callable` for the Celery test's workers: two workers on one machine would both
report its FQDN; each reports the name its environment gives it, as two machines would."""

import os


def hostname() -> str:
    return os.environ["CELERY_TEST_WORKER_HOSTNAME"]
