"""Example genius tasks used by the demo, the example DAGs and the runtime image's smoke test."""
