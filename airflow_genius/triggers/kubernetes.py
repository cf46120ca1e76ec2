"""KPO's pod trigger, plus the lifetime of the genius state Secret while the task is deferred.

``KubernetesPodTrigger`` on Airflow 3.3 already has ``on_kill`` (a user kills the deferred task → the
pod is deleted; a triggerer restart does not delete it). This subclass adds one thing: the Secret that
delivered the state password (its name travels in ``trigger_kwargs["genius_secret"]``) is deleted as
soon as the pod has started — the container holds its environment by then — and on ``on_kill``.

The operator swaps it in for KPO's trigger (:meth:`GeniusKubernetesOperator.defer`); nothing to do in DAGs.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.triggers.pod import ContainerState, KubernetesPodTrigger

#: Key in ``trigger_kwargs`` (and so in every trigger event) naming the per-task-instance Secret.
SECRET_KWARG = "genius_secret"  # noqa: S105 - the name of a kwarg, not a password


class GeniusKubernetesPodTrigger(KubernetesPodTrigger):
    """``KubernetesPodTrigger`` that also deletes the genius state Secret once it has served."""

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
        from kubernetes_asyncio import client as async_client

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
        await super().on_kill()
        try:
            await self.delete_secret()
        except Exception:
            self.log.exception("could not delete Secret %s/%s", self.pod_namespace, self.secret_name)
