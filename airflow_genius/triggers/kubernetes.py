"""KPO's pod trigger with one API client per connection, plus the lifetime of the genius state Secret
while the task is deferred.

``KubernetesPodTrigger`` on Airflow 3.3 already has ``on_kill`` (a user kills the deferred task → the
pod is deleted; a triggerer restart does not delete it). This subclass adds two things:

- Its hook (:class:`SharedClientAsyncKubernetesHook`) opens the ``kubernetes_asyncio`` API client once
  and shares it between the deferred pods of the same connection, where the provider's hook builds a
  new client — an SSL context loading the system CA store and a connection pool — for every poll. The
  client is closed when the last trigger using it ends, fails, is killed or cancelled.
- The Secret that delivered the state password (its name travels in ``trigger_kwargs["genius_secret"]``)
  is deleted as soon as the pod has started — the container holds its environment by then — and on
  ``on_kill``.

The operator swaps it in for KPO's trigger (:meth:`GeniusKubernetesOperator.defer`); nothing to do in DAGs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
from airflow.providers.cncf.kubernetes.triggers.pod import ContainerState, KubernetesPodTrigger
from airflow.triggers.base import TriggerEvent
from kubernetes_asyncio import client as async_client

from airflow_genius import _provider_compat as compat

#: Key in ``trigger_kwargs`` (and so in every trigger event) naming the per-task-instance Secret.
SECRET_KWARG = "genius_secret"  # noqa: S105 - the name of a kwarg, not a password


@dataclass
class _SharedClient:
    """One API client and the hooks using it (see :class:`SharedClientAsyncKubernetesHook`)."""

    key: tuple[Any, ...]
    #: The hook that opened the client: the client reads this hook's configuration on every request.
    opener: AsyncKubernetesHook | None = None
    client: async_client.ApiClient | None = None
    #: The TLS files the client's SSL context was built from (an exec plugin may rotate a client cert).
    tls: tuple[Any, ...] = ()
    users: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Closes every client opened for this key (the provider's ``get_conn`` contexts, kept open).
    contexts: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)


#: The open clients of this process, by event loop and connection (see ``_client_key``).
_SHARED: dict[tuple[Any, ...], _SharedClient] = {}


def _tls_files(hook: AsyncKubernetesHook | None) -> tuple[Any, ...]:
    """What a client's SSL context is built from, in the hook's loaded configuration."""
    configuration = hook.client_configuration if hook is not None else None
    if configuration is None:
        return ()
    return (
        configuration.ssl_ca_cert,
        configuration.cert_file,
        configuration.key_file,
        configuration.verify_ssl,
    )


class SharedClientAsyncKubernetesHook(AsyncKubernetesHook):
    """``AsyncKubernetesHook`` whose ``get_conn()`` yields one API client shared by every hook of the same
    connection in the running event loop, instead of a new client per call.

    .. code-block:: python

        hook = SharedClientAsyncKubernetesHook(conn_id="kubernetes_default")
        pod = await hook.get_pod(name="p", namespace="ns")   # opens the client, or joins the open one
        pod = await hook.get_pod(name="p", namespace="ns")   # the same client and connection pool
        await hook.close()                                   # leaves it: the last hook leaving closes it

    Hooks share a client when their connection id, ``in_cluster``, ``cluster_context``, ``config_dict``
    and connection extras are equal (an edited connection opens a new client). Each call still reloads
    the configuration as the provider does — a no-op once loaded, except with an exec plugin (EKS, GKE)
    whose fresh token the shared client then sends; a rotated client certificate opens a new client.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shared: _SharedClient | None = None
        # a configuration object passed in (not loaded from the connection) is shared only with itself
        self._given_configuration = id(self.client_configuration) if self.client_configuration else None

    async def _client_key(self) -> tuple[Any, ...]:
        extras = await self.get_conn_extras()  # the connection's, looked up once per hook (cached)
        return (
            asyncio.get_running_loop(),  # a client (its aiohttp session) belongs to one loop
            self.conn_id,
            self.in_cluster,
            self.cluster_context,
            json.dumps(self.config_dict, sort_keys=True, default=str),
            json.dumps(extras, sort_keys=True, default=str),
            self._given_configuration,
        )

    @contextlib.asynccontextmanager
    async def get_conn(self) -> AsyncGenerator[async_client.ApiClient, None]:
        """The shared API client (opened on first use); ``close()`` releases it, not the ``with`` block."""
        if self._shared is None:
            key = await self._client_key()
            self._shared = _SHARED.setdefault(key, _SharedClient(key))
            self._shared.users += 1
        shared = self._shared
        async with shared.lock:  # one client opened (and one exec plugin run) at a time
            if shared.opener is not None:
                await compat.k8s_async_hook_load_config(shared.opener)
            if shared.client is None or _tls_files(shared.opener) != shared.tls:
                shared.client = await shared.contexts.enter_async_context(super().get_conn())
                shared.opener, shared.tls = self, _tls_files(self)
            client = shared.client
        yield client

    async def close(self) -> None:
        """Stop using the shared client; the last of its hooks closes it. Idempotent."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        shared.users -= 1
        if shared.users == 0:
            if _SHARED.get(shared.key) is shared:
                del _SHARED[shared.key]
            await shared.contexts.aclose()


class GeniusKubernetesPodTrigger(KubernetesPodTrigger):
    """``KubernetesPodTrigger`` with a shared API client, deleting the genius state Secret once it has served."""

    @classmethod
    def from_trigger(cls, trigger: KubernetesPodTrigger) -> GeniusKubernetesPodTrigger:
        """The same trigger (all of KPO's arguments, whatever this provider version has) as this class."""
        _, kwargs = trigger.serialize()
        return cls(**kwargs)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    @property
    def secret_name(self) -> str | None:
        return self.trigger_kwargs.get(SECRET_KWARG)

    @cached_property
    def hook(self) -> SharedClientAsyncKubernetesHook:
        return SharedClientAsyncKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            in_cluster=self.in_cluster,
            config_dict=self.config_dict,
            cluster_context=self.cluster_context,
            connection_extras=self.connection_extras,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """KPO's wait; the hook lets go of the shared client when it ends, fails or is cancelled."""
        try:
            # KPO's run is an async generator (typed as an iterator): closed with ours, not left to the GC
            events = cast("AsyncGenerator[TriggerEvent, None]", super().run())
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        finally:
            await self.hook.close()

    async def _wait_for_pod_start(self) -> ContainerState:
        # A private method of KPO's trigger (listed in _provider_compat.OVERRIDDEN_PRIVATE_METHODS, checked
        # by tests/containers/test_provider_compat.py): the earliest moment the Secret is done with.
        state = await super()._wait_for_pod_start()
        await self.delete_secret()
        return state

    async def delete_secret(self) -> None:
        """Delete the Secret (idempotent: a missing one is fine)."""
        if not self.secret_name:
            return
        async with self.hook.get_conn() as connection:
            try:
                await async_client.CoreV1Api(connection).delete_namespaced_secret(
                    name=self.secret_name, namespace=self.pod_namespace
                )
                self.log.info("deleted Secret %s/%s", self.pod_namespace, self.secret_name)
            except async_client.ApiException as exc:
                if exc.status != 404:
                    raise

    async def on_kill(self) -> None:
        """The user killed the deferred task: delete the pod (KPO's on_kill), then the Secret."""
        try:
            await super().on_kill()
            try:
                await self.delete_secret()
            except Exception:
                self.log.exception("could not delete Secret %s/%s", self.pod_namespace, self.secret_name)
        finally:
            await self.hook.close()

    async def cleanup(self) -> None:
        """KPO's cleanup (nothing on Airflow 3.3), then the hook lets go of the shared client."""
        try:
            await super().cleanup()
        finally:
            await self.hook.close()
