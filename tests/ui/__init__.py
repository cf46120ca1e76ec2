"""Browser tests of the Airflow UI (marker ``ui``)."""
