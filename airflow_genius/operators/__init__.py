"""Airflow operators of airflow-genius: local (in the worker) and, per module, the remote runners."""
