"""The Genius dashboard inside Airflow 3: a plugin mounting the dashboard app on the API server.

What it adds (Airflow ≥ 3.1 plugin API):

* ``fastapi_apps``: the app of :mod:`~airflow_genius.plugins.dashboard_app` at ``/genius`` —
  ``/genius/`` (HTML list, ``?dag_id=&task_id=&status=&limit=``), ``/genius/record?dag_id=&task_id=
  &run_id=&map_index=`` (one record), ``/genius/run?dag_id=&run_id=`` (one DAG run, benchmark charts),
  ``/genius/task?dag_id=&task_id=`` (one task across runs, history and stream window charts),
  ``/genius/api/records`` and ``/genius/api/record`` (JSON).
* ``external_views``: a **Genius** entry in the UI's *Browse* menu (the list, inside the Airflow UI at
  ``/plugin/genius``), a **Genius record** tab on every task instance page, a **Genius run** tab on
  every DAG run page and a **Genius task** tab on every task page.

Callers must be logged in to Airflow (the UI's ``_token`` cookie or an ``Authorization: Bearer`` token,
exactly like the REST API) and only see records of DAGs whose task instances they may read.

Which stores it reads (``[genius]`` section, ``AIRFLOW__GENIUS__*``):

* ``dashboard_state_uris``: state URIs separated by commas or whitespace (no passwords, neither in the
  user info nor in the query: a ``GENIUS_STATE_PASSWORD`` in the API server's environment is used as
  for ``genius run``; a URI with one is shown redacted, as unavailable, with the reason);
* ``dashboard_state_conn_ids``: genius state connection ids, comma separated;
* neither set: the operators' default store — ``state_conn_id`` if set, else ``state_uri``.

Register it with the provider's entry point (pyproject.toml)::

    [project.entry-points."airflow.plugins"]
    genius_dashboard = "airflow_genius.plugins.dashboard:GeniusDashboardPlugin"

or drop ``from airflow_genius.plugins.dashboard import GeniusDashboardPlugin`` into a file of the
plugins folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk.plugins_manager import AirflowPlugin  # the Task SDK's base, as providers are asked to use
from fastapi import Request

from airflow_genius.core.errors import StateError
from airflow_genius.core.state import open_state
from airflow_genius.core.uris import STATE_CREDENTIALS_HINT, redact, secret_problem
from airflow_genius.links.record import DASHBOARD_PREFIX
from airflow_genius.plugins.dashboard_app import Store, create_app

#: Where the app is mounted on the API server (the extra links point there too).
URL_PREFIX = DASHBOARD_PREFIX
_SPLIT = re.compile(r"[\s,]+")


def _option(name: str) -> str:
    """``[genius] <name>`` through :func:`airflow_genius.config.get` (every option it reads is declared)."""
    from airflow_genius import config

    return config.get(name)


def _conn_store(conn_id: str) -> Store:
    def opener() -> Any:
        from airflow_genius.hooks.state import state_hook

        return state_hook(conn_id).open_state()

    return Store(f"connection {conn_id}", opener)


def _uri_store(uri: str, option: str) -> Store:
    """The store of a configured URI, labelled with the URI redacted. A URI that embeds a password is
    refused: its store reports the one-line reason (naming ``option``) and the others still show."""
    problem = secret_problem(
        uri,
        f"{STATE_CREDENTIALS_HINT} (the API server's environment) or list a connection in dashboard_state_conn_ids",
    )
    if problem is None:
        return Store(redact(uri), partial(open_state, uri))

    def refuse() -> Any:
        raise StateError(f"[genius] {option} {problem}")

    return Store(redact(uri), refuse)


def configured_stores() -> list[Store]:
    """The stores named by ``dashboard_state_uris`` / ``dashboard_state_conn_ids``, else the default one."""
    option = "dashboard_state_uris"
    uris = [uri for uri in _SPLIT.split(_option(option)) if uri]
    conn_ids = [conn_id for conn_id in _SPLIT.split(_option("dashboard_state_conn_ids")) if conn_id]
    if not uris and not conn_ids:
        default_conn = _option("state_conn_id").strip()
        if default_conn:
            conn_ids = [default_conn]
        else:
            option, uris = "state_uri", [_option("state_uri")]
    stores = [_conn_store(conn_id) for conn_id in conn_ids]
    stores += [_uri_store(uri, option) for uri in uris]
    return stores


async def airflow_user(request: Request) -> Any:
    """The logged-in Airflow user (bearer token, else the UI's cookie); HTTP 401/403 otherwise."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    return await get_user(request, None, credentials)


def readable_dags(user: Any, dag_ids: set[str]) -> set[str]:
    """The DAGs among ``dag_ids`` whose task instances ``user`` may read."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    return {
        dag_id
        for dag_id in dag_ids
        if manager.is_authorized_dag(
            method="GET",
            access_entity=DagAccessEntity.TASK_INSTANCE,
            details=DagDetails(id=dag_id),
            user=user,
        )
    }


def airflow_base_path() -> str:
    """Path prefix of the Airflow UI (``[api] base_url``'s path, empty at the root)."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return str(get_auth_manager().get_url_login(next_url=str(request.url)))


def build_app(stores: Sequence[Store] | None = None) -> Any:
    """The dashboard app wired to Airflow (``stores``: fixed stores instead of the configured ones)."""
    return create_app(
        (lambda: list(stores)) if stores is not None else configured_stores,
        user=airflow_user,
        allowed_dags=readable_dags,
        airflow_base=airflow_base_path,
        login_url=_login_url,
    )


app = build_app()


class GeniusDashboardPlugin(AirflowPlugin):
    """Airflow plugin: the Genius dashboard app, its menu entry and the task instance tab."""

    name = "genius_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Genius dashboard"}]
    external_views = [
        {
            "name": "Genius",
            "href": f"{URL_PREFIX}/",
            "url_route": "genius",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Genius record",
            "href": f"{URL_PREFIX}/record?dag_id={{DAG_ID}}&task_id={{TASK_ID}}&run_id={{RUN_ID}}"
            "&map_index={MAP_INDEX}",
            "url_route": "genius_record",
            "destination": "task_instance",
        },
        {
            "name": "Genius run",
            "href": f"{URL_PREFIX}/run?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "url_route": "genius_run",
            "destination": "dag_run",
        },
        {
            "name": "Genius task",
            "href": f"{URL_PREFIX}/task?dag_id={{DAG_ID}}&task_id={{TASK_ID}}",
            "url_route": "genius_task",
            "destination": "task",
        },
    ]
