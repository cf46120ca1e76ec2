"""Airflow plugins of airflow-genius: the Genius dashboard (``airflow_genius.plugins.dashboard``).

The dashboard's web app and HTML live in :mod:`~airflow_genius.plugins.dashboard_app` and
:mod:`~airflow_genius.plugins.dashboard_html`, which import no Airflow (testable on their own); only
:mod:`~airflow_genius.plugins.dashboard` ties them to Airflow's config, auth manager and plugin system.
"""
