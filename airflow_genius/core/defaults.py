"""Defaults shared by the TaskSpec and the operators (a tiny module: DAG files import it at parse)."""

DEFAULT_PARTITION_SCHEME = "%Y/%m/%d"
DEFAULT_NAMESPACE = "default"
#: The embedded default: one SQLite file on the local machine, safe across processes.
DEFAULT_STATE_URI = "sqlite:///.genius/state.db"
