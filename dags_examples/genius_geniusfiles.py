"""Every Geniusfile (``*.genius.yaml``) in this folder, as Airflow DAGs.

Write a pipeline in YAML beside this file (see ``quotes.genius.yaml`` and docs/geniusfile.md); the
airflow DAG processor picks it up through this module. Check a Geniusfile before committing it with
``genius dag validate FILE``.
"""

from __future__ import annotations

from pathlib import Path

from airflow_genius.dag_factory import load_geniusfiles

load_geniusfiles(Path(__file__).resolve().parent, globals())
