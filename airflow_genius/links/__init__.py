"""Operator extra links of airflow-genius."""
