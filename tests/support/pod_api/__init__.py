"""Pod API server: the test rig's stand-in for a Kubernetes apiserver + one kubelet (+ cluster DNS).

No apiserver can be installed on the test machine, so the Kubernetes runner is tested against this:
real HTTP speaking the part of the Kubernetes REST API (``/api/v1``, JSON) that
``KubernetesPodOperator`` (sync and deferrable, ``kubernetes`` and ``kubernetes_asyncio`` clients)
calls, plus the Service subset the genius service operator calls, and running each pod's container
through podman's Docker API.

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
``POST   …/namespaces/{ns}/services``                  create a ``ClusterIP`` Service (selector, TCP
                                                        ports with ``targetPort == port``, optional
                                                        headless ``clusterIP: None``)
``GET    …/services[?labelSelector=&fieldSelector=]``   list (also ``/api/v1/services``); no watch
``GET``, ``DELETE …/services/{name}``                   read; delete (at once, answers the object)
``GET    …/namespaces/{ns}/endpoints/{name}``           the Service's Endpoints, computed from its
                                                        selector: Running pods ready, Pending not
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

Services: a stand-in, not a proxy. Every pod shares the host's network, so every Service's cluster IP
is ``127.0.0.1`` and a client reaches the selected pod by connecting to ``<cluster IP or DNS name>:<port>``
— the pod's own port (hence ``targetPort`` must equal ``port``; a named ``targetPort``, ``NodePort``,
``LoadBalancer`` and ``ExternalName`` are refused with 422). Cluster DNS is modelled in pods only: when a
pod's container is created it gets ``/etc/hosts`` entries for every Service that exists at that moment
(``name.namespace.svc``, ``name.namespace.svc.cluster.local``, and ``name`` for its own namespace); a
Service created later does not resolve in a pod already running, and nothing outside pods (the Airflow
worker) resolves them. Not modelled: load balancing between several selected pods (whichever listens
on the host port answers), readiness gates, session affinity, updates (PUT/PATCH) and watches.

For tests: ``server.cluster.created_pods`` (every pod object as created), ``server.cluster.launched``
(container id and podman's ``inspect`` at start: argv and environment as podman holds them),
``server.cluster.created_secrets``, ``server.cluster.secrets`` (live), ``server.cluster.created_services``,
``server.cluster.services`` (live), and
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
