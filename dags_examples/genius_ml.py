"""An ML team's workflow on the worker: ingest a labelled text data set → train a classifier (a new model
version) → evaluate that version → serve it → two benchmark clients → stop the service (teardown) →
report.

Needs the ``ml`` extra (scikit-learn). Models go to ``GENIUS_EXAMPLE_MODEL_URI`` (default: the git
repository ``<data>/models.git``; create it once with ``git init --bare``); the service listens on
``GENIUS_EXAMPLE_ML_PORT`` (default 8765) of the worker. docs/ml.md walks through it.
"""

from __future__ import annotations

import os

from airflow.sdk import Param, dag

from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator
from airflow_genius.operators.local_service import (
    GeniusLocalServiceOperator,
    GeniusLocalServiceStopOperator,
)

DATA_ROOT = os.environ.get(
    "GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data")
)
MODEL_URI = os.environ.get("GENIUS_EXAMPLE_MODEL_URI", f"git+file://{DATA_ROOT}/models.git")
PORT = int(os.environ.get("GENIUS_EXAMPLE_ML_PORT", "8765"))
ML = "airflow_genius.examples.ml"
DATASET = "{{ ti.xcom_pull(task_ids='ingest', key='genius_output') }}"
TRAINED = "{{ ti.xcom_pull(task_ids='train')['version'] }}"


@dag(
    dag_id="genius_ml",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,  # "{{ params.rows }}" renders to an int, not a string
    tags=["genius", "example", "ml"],
    params={
        "rows": Param(
            2000, type="integer", minimum=100, maximum=200_000, description="Sentences to generate"
        ),
        "requests": Param(200, type="integer", minimum=1, maximum=100_000, description="Requests per client"),
    },
    doc_md=__doc__,
)
def genius_ml() -> None:
    ingest = GeniusSpoutOperator(
        task_id="ingest",
        task_class=f"{ML}:TextDatasetSpout",
        method="generate",
        method_kwargs={"rows": "{{ params.rows }}", "seed": 7},
        output_uri=f"{DATA_ROOT}/ml/dataset",
    )
    train = GeniusBoltOperator(
        task_id="train",
        task_class=f"{ML}:TrainClassifier",
        method="train",
        method_kwargs={"model_name": "classifier"},
        input_uri=DATASET,
        output_uri=f"{DATA_ROOT}/ml/training",
        model_uri=MODEL_URI,
    )
    evaluate = GeniusBoltOperator(
        task_id="evaluate",
        task_class=f"{ML}:EvaluateClassifier",
        method="evaluate",
        input_uri=DATASET,
        output_uri=f"{DATA_ROOT}/ml/evaluation",
        model_uri=MODEL_URI,
        model_name="classifier",
        model_version=TRAINED,  # the version this run trained (or "latest")
    )
    serve = GeniusLocalServiceOperator(
        task_id="serve",
        task_class=f"{ML}:ClassifierService",
        method="serve",
        model_uri=MODEL_URI,
        model_name="classifier",
        model_version=TRAINED,
        service_port=PORT,
        ready_timeout=120,
    )
    bench = GeniusSpoutOperator.partial(
        task_id="bench",
        service="serve",  # SERVICE_URL etc. while each client runs
        task_class=f"{ML}:BenchmarkClient",
        method="run",
        output_uri=f"{DATA_ROOT}/ml/bench",
    ).expand(
        method_kwargs=[
            {"requests": "{{ params.requests }}", "concurrency": 1, "batch": 1},
            {"requests": "{{ params.requests }}", "concurrency": 4, "batch": 8},
        ]
    )
    stop = GeniusLocalServiceStopOperator(task_id="serve_stop", service="serve")
    report = GeniusSpoutOperator(
        task_id="report",
        task_class=f"{ML}:MlReport",
        method="report",
        output_uri=f"{DATA_ROOT}/ml/report",
    )
    ingest >> train >> evaluate >> serve >> bench >> stop.as_teardown(setups=serve)
    stop >> report


genius_ml()
