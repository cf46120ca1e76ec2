"""State hooks: an Airflow connection in, a ready :class:`~airflow_genius.core.state.StateManager` out.

Each hook turns its connection into the two things every runner needs: a state URI **without** the
password (it goes into the TaskSpec, argv and logs are safe) and the secret environment
(``GENIUS_STATE_PASSWORD``) that the platform's secret mechanism delivers to the runtime. The local
operator opens the store through exactly the same path as ``genius run`` does in a container.

>>> hook = state_hook("genius_redis_default")       # doctest: +SKIP
>>> with hook.get_conn() as state:                   # doctest: +SKIP
...     state.list_runs(dag_id="etl", limit=5)
"""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseHook

from airflow_genius.core.state import DEFAULT_STATE_URI, StateManager, TaskScope, open_state
from airflow_genius.core.uris import STATE_PASSWORD_ENV


class GeniusStateHook(BaseHook):
    """Base of the state hooks; subclasses map their connection to a state URI.

    Usage::

        hook = GeniusRedisStateHook("genius_redis_default")
        hook.state_uri        # 'redis://genius@redis:6379/0?prefix=genius'  (no password)
        hook.secret_env       # {'GENIUS_STATE_PASSWORD': '...'}  (for the runtime's secret env)
        state = hook.get_conn()
    """

    conn_name_attr = "genius_conn_id"
    default_conn_name = "genius_state_default"
    conn_type: ClassVar[str] = ""
    hook_name: ClassVar[str] = ""

    def __init_subclass__(cls, *, conn_type: str = "", hook_name: str = "", **kwargs: Any) -> None:
        """A backend hook names its connection type and form title in its class header
        (``class H(GeniusStateHook, conn_type="genius_x", hook_name="...")``); its default connection
        is ``<conn_type>_default``."""
        super().__init_subclass__(**kwargs)
        if conn_type:
            cls.conn_type, cls.hook_name, cls.default_conn_name = conn_type, hook_name, f"{conn_type}_default"

    def __init__(self, genius_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.genius_conn_id = genius_conn_id
        self._state: StateManager | None = None

    # -------------------------------------------------------------- what runners use
    @property
    def connection(self) -> Any:
        return self.get_connection(self.genius_conn_id)

    @property
    def state_uri(self) -> str:
        """The store's URI without credentials: safe for TaskSpecs, argv and logs."""
        return self.uri_for(self.connection)

    @property
    def secret_env(self) -> dict[str, str]:
        """Environment the runtime needs besides the URI (delivered as a secret, never in argv)."""
        password = self.connection.password
        return {STATE_PASSWORD_ENV: password} if password else {}

    def get_conn(self) -> StateManager:
        """An open StateManager (cached on the hook; closed by :meth:`close`)."""
        if self._state is None:
            self._state = self.open_state()
        return self._state

    def open_state(self) -> StateManager:
        """A new StateManager; the caller closes it."""
        return open_state(self.state_uri, env={**os.environ, **self.secret_env})

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None

    def test_connection(self) -> tuple[bool, str]:
        """Open the store and write, read and delete a probe key."""
        scope = TaskScope("__genius_test_connection__", "airflow", self.genius_conn_id)
        try:
            with self.open_state() as state:
                state.set_state(scope, "probe", {"ok": True})
                ok = state.get_state(scope, "probe") == {"ok": True}
                state.delete_state(scope, "probe")
        except Exception as exc:
            # The URI carries no password and the core scrubs secrets from its errors.
            return False, f"{type(exc).__name__}: {exc}"
        return (True, "state store is reachable and writable") if ok else (False, "probe read back wrong")

    @classmethod
    def uri_for(cls, conn: Any) -> str:
        """Map an Airflow connection to a state URI (no password)."""
        raise TypeError(f"{cls.__name__} does not map connections; use a backend hook")

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Kept for Airflow < 3.2; newer versions read ``conn-fields`` from the provider info."""
        from airflow_genius.hooks.forms import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR.get(cls.conn_type, {})


class GeniusSqliteStateHook(GeniusStateHook, conn_type="genius_sqlite", hook_name="Genius state (SQLite)"):
    """Embedded SQLite state: one file on one machine (extra ``path``; default ``.genius/state.db``)."""

    @classmethod
    def uri_for(cls, conn: Any) -> str:
        path = conn.extra_dejson.get("path") or conn.host
        if not path:
            return DEFAULT_STATE_URI
        return f"sqlite:///{path}"


class GeniusRedisStateHook(GeniusStateHook, conn_type="genius_redis", hook_name="Genius state (Redis)"):
    """Redis state: host, port, login (ACL user), password, extras ``db`` and ``prefix``, ``ssl``."""

    @classmethod
    def uri_for(cls, conn: Any) -> str:
        extra = conn.extra_dejson
        scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("1", "true", "yes") else "redis"
        db = extra.get("db", conn.schema or 0)
        return _server_uri(scheme, conn, 6379, str(db), {"prefix": extra.get("prefix")})


class GeniusPostgresStateHook(
    GeniusStateHook, conn_type="genius_postgres", hook_name="Genius state (PostgreSQL)"
):
    """PostgreSQL state: host, port, schema (database), login, password, extra ``table_prefix``."""

    @classmethod
    def uri_for(cls, conn: Any) -> str:
        extra = conn.extra_dejson
        database = quote(conn.schema or "postgres", safe="")
        query = {k: extra.get(k) for k in ("table_prefix", "sslmode")}
        return _server_uri("postgresql", conn, 5432, database, query)


class GeniusDynamoDBStateHook(
    GeniusStateHook, conn_type="genius_dynamodb", hook_name="Genius state (DynamoDB)"
):
    """DynamoDB state: extras ``table``, ``region``, ``create``; AWS credentials from ``aws_conn_id``
    (the amazon provider's connection) or boto3's default chain (role, environment)."""

    @classmethod
    def uri_for(cls, conn: Any) -> str:
        extra = conn.extra_dejson
        table = extra.get("table") or conn.schema
        if not table:
            raise ValueError(f"connection {conn.conn_id!r}: set extra 'table' to the DynamoDB table name")
        query = {
            k: str(extra[k]).lower() if k == "create" else extra[k]
            for k in ("region", "create")
            if extra.get(k)
        }
        suffix = f"?{urlencode(query)}" if query else ""
        return f"dynamodb://{quote(table, safe='')}{suffix}"

    @property
    def secret_env(self) -> dict[str, str]:
        return {}  # AWS credentials travel as the platform's role/secrets, not through this hook

    def open_state(self) -> StateManager:
        extra = self.connection.extra_dejson
        if not extra.get("aws_conn_id"):
            return super().open_state()
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from airflow_genius.core.state.dynamodb import DynamoDBStateManager

        client = AwsBaseHook(aws_conn_id=extra["aws_conn_id"], client_type="dynamodb").get_conn()
        return DynamoDBStateManager(
            extra.get("table") or self.connection.schema,
            region=extra.get("region"),
            create=str(extra.get("create", "")).lower() == "true",
            client=client,
        )


def _server_uri(scheme: str, conn: Any, default_port: int, path: str, query: dict[str, Any]) -> str:
    """``scheme://[login@]host:port/path[?query]`` from a connection; never the password."""
    user = f"{quote(conn.login, safe='')}@" if conn.login else ""
    kept = {key: value for key, value in query.items() if value}
    suffix = f"?{urlencode(kept)}" if kept else ""
    return f"{scheme}://{user}{conn.host or '127.0.0.1'}:{conn.port or default_port}/{path}{suffix}"


STATE_HOOKS: dict[str, type[GeniusStateHook]] = {
    hook.conn_type: hook
    for hook in (
        GeniusSqliteStateHook,
        GeniusRedisStateHook,
        GeniusPostgresStateHook,
        GeniusDynamoDBStateHook,
    )
}


def state_hook(conn_id: str) -> GeniusStateHook:
    """The state hook matching the connection's type.

    >>> state_hook("genius_redis_default").state_uri          # doctest: +SKIP
    'redis://127.0.0.1:6379/0'
    """
    conn = BaseHook.get_connection(conn_id)
    hook_class = STATE_HOOKS.get(conn.conn_type or "")
    if hook_class is None:
        known = ", ".join(sorted(STATE_HOOKS))
        raise ValueError(
            f"connection {conn_id!r} has type {conn.conn_type!r}; a genius state connection is one of {known}"
        )
    return hook_class(conn_id)
