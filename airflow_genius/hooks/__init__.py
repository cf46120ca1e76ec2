"""Airflow hooks of airflow-genius: state stores from Airflow connections."""
