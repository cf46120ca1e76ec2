"""The ML Geniusfile (dags_examples/ml.genius.yaml, its own local runner) as an Airflow DAG of the UI
stack: the browser test opens the benchmark chart of its two clients.

The stack's environment has no ML settings, so this file gives the Geniusfile its own: the model store
is the git repository ``models.git`` in the stack's data folder (the test creates it), and the service
listens on a port derived from the stack's home — the same on every parse, which the DAG processor and
each task's process do separately — below Linux's ephemeral range, where free ports are handed out.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from airflow_genius.core.geniusfile import load_geniusfile
from airflow_genius.dag_factory import build_dag

GENIUSFILE = Path(__file__).resolve().parents[3] / "dags_examples" / "ml.genius.yaml"
DATA = os.environ["GENIUS_EXAMPLE_DATA"]
PORT = 20000 + zlib.crc32(os.environ["AIRFLOW_HOME"].encode()) % 12000

genius_ml_geniusfile = build_dag(
    load_geniusfile(
        GENIUSFILE,
        env={
            **os.environ,
            "GENIUS_EXAMPLE_MODEL_URI": f"git+file://{DATA}/models.git",
            "GENIUS_EXAMPLE_ML_PORT": str(PORT),
        },
    )
)
