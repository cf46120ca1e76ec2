"""airflow-genius: Geniusrise-style spouts and bolts for Apache Airflow.

Kept tiny on purpose: Airflow imports provider packages early, so nothing heavy lives here.
"""

__version__ = "0.1.0"
