"""Pod API server: the test rig's stand-in for a Kubernetes apiserver + one kubelet.

No apiserver can be installed on the test machine, so the Kubernetes runner is tested against this:
real HTTP speaking the part of the Kubernetes REST API (``/api/v1``, JSON) that
``KubernetesPodOperator`` (sync and deferrable, ``kubernetes`` and ``kubernetes_asyncio`` clients)
calls, and running each pod's container through podman's Docker API.

README
======

Start (a session fixture does this: ``tests/containers/kubernetes/conftest.py``)::

    server = PodApiServer(docker_host="unix:///tmp/genius-rig/podman.sock").start()
    server.write_kubeconfig(tmp / "kubeconfig")       # http://127.0.0.1:<free port>, bearer token
    # Airflow: a `kubernetes` connection with extra {"kube_config_path": ..., "in_cluster": false}
    ...
    server.stop()                                      # removes every container it started

What it serves (anything else is answered ``404`` with a ``Status``; requests need the bearer token):

=====================================================  ===============================================
``GET /version``, ``/healthz``, ``/api``, ``/api/v1``,  discovery (what clients and ``kubectl`` probe)
``/apis``, ``/api/v1/namespaces[/{ns}]``                (every namespace exists)
``POST   …/namespaces/{ns}/pods``                      create; exactly one container, no init containers
``GET    …/pods[?labelSelector=&fieldSelector=]``       list (``=``, ``==``, ``!=``, ``!k``, ``k``, ``in``,
                                                        ``notin``; fields by dotted path); no pod watch
``GET    …/pods/{name}``, ``PATCH`` (merge or JSON      read; patch (KPO's ``already_checked`` label)
patch), ``DELETE`` (``gracePeriodSeconds``)             delete = stop (SIGTERM, SIGKILL after grace) +
                                                        remove the container, then the pod is gone
``GET    …/pods/{name}/log``                            ``follow``, ``timestamps``, ``sinceSeconds``,
                                                        ``sinceTime``, ``tailLines``, ``limitBytes``;
                                                        stdout+stderr as kubelet keeps them
``GET    …/events[?fieldSelector=involvedObject.name=]``  list, and ``watch=true`` (ADDED events until
                                                        ``timeoutSeconds``, at most 60 s)
``POST/GET/PUT/DELETE …/namespaces/{ns}/secrets``       Secrets (``stringData`` folded into ``data``)
=====================================================  ===============================================

How a pod runs: ``Pending`` (PodScheduled False) → scheduled on node ``genius-pod-api`` → env resolved
(``value``, ``valueFrom.secretKeyRef`` from the stored Secrets — a missing Secret or key keeps the
container waiting with ``CreateContainerConfigError`` and is retried each second, as kubelet does —
and ``fieldRef`` of ``metadata.name|namespace|uid``, ``spec.nodeName``, ``status.podIP|hostIP``) →
the image must be present locally (nothing is pulled: ``ErrImageNeverPull``) → container created
and started (``command`` → Docker entrypoint, ``args`` → Docker command, so an image ENTRYPOINT is
kept when only ``args`` is set; ``securityContext.runAsUser/runAsGroup`` → user; ``workingDir``) →
``Running`` → when it exits ``Succeeded``/``Failed`` with ``containerStatuses[0].state.terminated``
carrying the real exit code, ``reason`` (Completed/Error/OOMKilled) and times. Events: Scheduled,
Pulled, Created, Started, Killing, Failed.

Volumes: ``hostPath`` → a bind mount of that host folder (``readOnly`` honoured; it must be writable
by the image's user — uid 50000 for the runtime image); ``emptyDir`` → a fresh host folder. Every
pod runs with the host's network (as ``hostNetwork: true``): the rig's Redis, Postgres and moto
listen on 127.0.0.1. Resources, node selectors, tolerations, service accounts, image pull secrets and
restart policies are accepted and ignored (restartPolicy is effectively ``Never``, which KPO uses).

For tests: ``server.cluster.created_pods`` (every pod object as created), ``server.cluster.launched``
(container id and podman's ``inspect`` at start: argv and environment as podman holds them),
``server.cluster.created_secrets``, ``server.cluster.secrets`` (live), and
``server.containers(**labels)`` (podman's containers of this server; labels
``io.kubernetes.pod.name``/``namespace``/``uid`` and ``io.genius.pod-api.server``).
"""

from support.pod_api.pods import POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL, SERVER_LABEL, Cluster
from support.pod_api.server import PodApiServer

__all__ = [
    "POD_NAMESPACE_LABEL",
    "POD_NAME_LABEL",
    "POD_UID_LABEL",
    "SERVER_LABEL",
    "Cluster",
    "PodApiServer",
]
