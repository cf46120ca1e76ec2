"""The Pod API server speaks the Kubernetes API the clients expect (both the ``kubernetes`` and the
``kubernetes_asyncio`` clients), and the genius pod trigger's kill path works against it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException
from support.aio import run_coroutine
from support.pod_api import POD_NAME_LABEL, PodApiServer

from containers.kubernetes.conftest import IMAGE

pytestmark = [pytest.mark.containers, pytest.mark.slow]

PYTHON = "/opt/genius/bin/python"  # the runtime image's interpreter


@pytest.fixture
def core(pod_api: PodApiServer) -> client.CoreV1Api:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(pod_api.kubeconfig_path), client_configuration=configuration)  # type: ignore[attr-defined]
    return client.CoreV1Api(client.ApiClient(configuration))


def python_pod(name: str, code: str, **container: Any) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, labels={"suite": "pod-api", "case": name}),
        spec=k8s.V1PodSpec(
            restart_policy="Never",
            containers=[k8s.V1Container(name="base", image=IMAGE, command=[PYTHON, "-c", code], **container)],
        ),
    )


def wait_for(
    core: client.CoreV1Api, name: str, namespace: str, phases: set[str], timeout: float = 60
) -> k8s.V1Pod:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.status.phase in phases:
            return pod
        time.sleep(0.2)
    raise AssertionError(f"pod {name} never reached {phases}")


def test_pod_lifecycle_secrets_logs_selectors_events(core: client.CoreV1Api, pod_api: PodApiServer) -> None:
    namespace, name = f"ns-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    code = (
        "import os, sys, time\n"
        "print('secret ok' if os.environ['TOKEN'] == 'tkn' else 'secret wrong', flush=True)\n"
        "time.sleep(1.5); print('second line', flush=True); time.sleep(1.5)\n"
        "print('to stderr', file=sys.stderr, flush=True); sys.exit(4)\n"
    )
    env = [k8s.V1EnvVar(name="TOKEN", value_from=k8s.V1EnvVarSource(
        secret_key_ref=k8s.V1SecretKeySelector(name="creds", key="token")))]  # fmt: skip
    core.create_namespaced_pod(namespace, python_pod(name, code, env=env))
    # the Secret does not exist yet: kubelet reports a config error and keeps retrying
    deadline = time.monotonic() + 30
    while True:
        statuses = core.read_namespaced_pod(name, namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        if waiting is not None and waiting.reason == "CreateContainerConfigError":
            assert 'secret "creds" not found' in waiting.message
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    with pytest.raises(ApiException) as not_started:
        core.read_namespaced_pod_log(name, namespace)
    assert not_started.value.status == 400
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="creds"), string_data={"token": "tkn"})
    )
    running = wait_for(core, name, namespace, {"Running"})
    assert running.status.container_statuses[0].state.running.started_at is not None
    # follow streams until the container exits; timestamps are RFC 3339 like kubelet's
    follow = core.read_namespaced_pod_log(
        name, namespace, container="base", follow=True, timestamps=True, _preload_content=False
    )
    lines = [line.decode() for line in follow.stream() for line in line.splitlines()]
    messages = [line.split(" ", 1)[1] for line in lines]
    assert messages == ["secret ok", "second line", "to stderr"], lines
    done = wait_for(core, name, namespace, {"Succeeded", "Failed"})
    terminated = done.status.container_statuses[0].state.terminated
    assert (done.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 4, "Error")
    plain = core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
    assert plain == "secret ok\nsecond line\nto stderr\n"
    tail = core.read_namespaced_pod_log(name, namespace, tail_lines=1, _preload_content=False).data.decode()
    assert tail == "to stderr\n"
    second_at = lines[1].split(" ", 1)[0]
    # sinceTime (the Python client only has sinceSeconds; Go clients and kubectl send sinceTime)
    request = urllib.request.Request(
        f"{pod_api.url}/api/v1/namespaces/{namespace}/pods/{name}/log?sinceTime={urllib.parse.quote(second_at)}",
        headers={"Authorization": f"Bearer {pod_api.token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.read().decode().splitlines()[0] == "second line"
    # selectors as KPO builds them
    for selector, found in [
        (f"case={name},already_checked!=True,!airflow-worker", True),
        (f"case in ({name},x),suite", True),
        (f"case notin ({name})", False),
        ("suite=other", False),
    ]:
        names = [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items]
        assert (names == [name]) is found, (selector, names)
    core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {"already_checked": "True"}}})
    assert core.list_namespaced_pod(namespace, label_selector="suite,already_checked!=True").items == []
    reasons = [
        e.reason
        for e in core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    ]
    assert {"Scheduled", "Pulled", "Created", "Started"} <= set(reasons)
    # delete: the container is removed, then the pod is gone
    core.delete_namespaced_pod(name, namespace, body=k8s.V1DeleteOptions())
    core.delete_namespaced_secret("creds", namespace)
    deadline = time.monotonic() + 30
    while pod_api.containers(**{POD_NAME_LABEL: name}) or (namespace, name) in pod_api.cluster.pods:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod(name, namespace)
    assert gone.value.status == 404


def test_logs_keep_timestamps_the_container_printed(core: client.CoreV1Api) -> None:
    """Only the timestamp kubelet puts in front of a line (``timestamps=true``) is the server's: one the
    container printed, anywhere in the line, is output; a line written in two parts is one line, also
    for ``tailLines``."""
    namespace, name = "genius-logs", f"p-{uuid.uuid4().hex[:6]}"
    code = (
        "import sys, time\n"
        "print('started at 2026-01-02T03:04:05Z, done', flush=True)\n"
        "sys.stdout.write('part one, '); sys.stdout.flush(); time.sleep(0.5)\n"
        "print('2020-01-01T00:00:00.123456+00:00 then part two', flush=True)\n"
        "print('2021-06-07T08:09:10Z', flush=True)\n"
        "sys.stdout.write('last, '); sys.stdout.flush(); time.sleep(0.5); print('in two parts', flush=True)\n"
    )
    core.create_namespaced_pod(namespace, python_pod(name, code))
    wait_for(core, name, namespace, {"Succeeded"})
    printed = [
        "started at 2026-01-02T03:04:05Z, done",
        "part one, 2020-01-01T00:00:00.123456+00:00 then part two",
        "2021-06-07T08:09:10Z",
        "last, in two parts",
    ]
    plain = core.read_namespaced_pod_log(name, namespace, _preload_content=False).data.decode()
    assert plain.splitlines() == printed
    stamped = core.read_namespaced_pod_log(name, namespace, timestamps=True, _preload_content=False)
    lines = stamped.data.decode().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == printed, lines
    assert all(datetime.datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines)
    # tailLines counts lines, not the records a line written in parts became
    tail = core.read_namespaced_pod_log(name, namespace, tail_lines=1, _preload_content=False).data.decode()
    assert tail == "last, in two parts\n"
    core.delete_namespaced_pod(name, namespace)


def test_deferred_kill_deletes_the_pod_and_its_secret(core: client.CoreV1Api, pod_api: PodApiServer) -> None:
    """What the triggerer does when a user kills a deferred task (Airflow 3.3 calls the trigger's on_kill)."""
    from airflow_genius.triggers.kubernetes import SECRET_KWARG, GeniusKubernetesPodTrigger

    namespace, name, secret = "genius-kill", f"p-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=secret), string_data={"k": "v"})
    )
    core.create_namespaced_pod(namespace, python_pod(name, "import time; time.sleep(300)"))
    wait_for(core, name, namespace, {"Running"})
    trigger = GeniusKubernetesPodTrigger(
        pod_name=name, pod_namespace=namespace, trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base", kubernetes_conn_id=None, config_dict=pod_api.kubeconfig(),
        termination_grace_period=5, trigger_kwargs={SECRET_KWARG: secret},
    )  # fmt: skip
    started = time.monotonic()
    run_coroutine(trigger.on_kill())
    deadline = time.monotonic() + 30
    while pod_api.containers(**{POD_NAME_LABEL: name}):  # SIGTERM, then SIGKILL after the 5 s grace
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert time.monotonic() - started < 30
    assert (namespace, secret) not in pod_api.cluster.secrets


def test_the_trigger_waits_for_the_pod_and_drops_the_secret_once_it_started(
    core: client.CoreV1Api, pod_api: PodApiServer
) -> None:
    from airflow_genius.triggers.kubernetes import SECRET_KWARG, GeniusKubernetesPodTrigger

    namespace, name, secret = "genius-run", f"p-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=secret), string_data={"k": "v"})
    )
    env = [
        k8s.V1EnvVar(
            name="K",
            value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret, key="k")),
        )
    ]
    core.create_namespaced_pod(
        namespace, python_pod(name, "import os, time; time.sleep(2); assert os.environ['K'] == 'v'", env=env)
    )
    trigger = GeniusKubernetesPodTrigger(
        pod_name=name, pod_namespace=namespace, trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base", kubernetes_conn_id=None, config_dict=pod_api.kubeconfig(),
        poll_interval=0.5, startup_check_interval=0.5, trigger_kwargs={SECRET_KWARG: secret},
    )  # fmt: skip

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload  # type: ignore[no-any-return]
        raise AssertionError("no event")

    event = run_coroutine(first_event())
    assert event["status"] == "success" and event[SECRET_KWARG] == secret, event
    assert (namespace, secret) not in pod_api.cluster.secrets
    core.delete_namespaced_pod(name, namespace)


def test_deferred_pods_of_one_connection_share_one_api_client_closed_when_they_end(
    core: client.CoreV1Api, pod_api: PodApiServer
) -> None:
    """Two triggers of the same connection in one event loop: every API call of both (pod reads while
    the pods start and run, event watches) goes through one client, closed once both have fired; a
    kill afterwards opens one for its delete and closes it too."""
    from airflow_genius.triggers.kubernetes import GeniusKubernetesPodTrigger

    namespace = "genius-shared"
    names = [f"p-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        core.create_namespaced_pod(namespace, python_pod(name, "import time; time.sleep(3)"))
    triggers = [
        GeniusKubernetesPodTrigger(
            pod_name=name,
            pod_namespace=namespace,
            trigger_start_time=datetime.datetime.now(datetime.UTC),
            base_container_name="base",
            kubernetes_conn_id=None,
            config_dict=pod_api.kubeconfig(),
            poll_interval=0.5,
            startup_check_interval=0.5,
        )
        for name in names
    ]
    used: list[Any] = []  # the client of every API call, in call order

    def recorded(hook: Any) -> None:
        get_conn = hook.get_conn

        @contextlib.asynccontextmanager
        async def recording() -> Any:
            async with get_conn() as api_client:
                used.append(api_client)
                yield api_client

        hook.get_conn = recording  # the provider's methods call self.get_conn()

    for trigger in triggers:
        recorded(trigger.hook)

    async def wait_for_both() -> list[list[dict[str, Any]]]:
        async def fired(trigger: GeniusKubernetesPodTrigger) -> list[dict[str, Any]]:
            events = [event.payload async for event in trigger.run()]
            await trigger.cleanup()
            return events

        return await asyncio.gather(*(fired(trigger) for trigger in triggers))

    for events in run_coroutine(wait_for_both()):
        assert [event["status"] for event in events] == ["success"], events
    assert len(used) > 4 and all(api_client is used[0] for api_client in used), used
    assert used[0].rest_client.pool_manager.closed
    killed = GeniusKubernetesPodTrigger.from_trigger(triggers[1])  # as the triggerer has it after a restart
    used.clear()
    recorded(killed.hook)
    run_coroutine(killed.on_kill())  # deletes the pod
    assert used and used[0].rest_client.pool_manager.closed
    deadline = time.monotonic() + 30
    while pod_api.containers(**{POD_NAME_LABEL: names[1]}):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    core.delete_namespaced_pod(names[0], namespace)


def test_services_select_pods_resolve_in_pods_and_reach_the_selected_pod(
    core: client.CoreV1Api, pod_api: PodApiServer
) -> None:
    """The Service subset: create/read/list/delete, validation, Endpoints from the selector, and cluster
    DNS in pods created after the Service (``/etc/hosts``) leading to the selected pod's port."""
    from support.private_stores import free_port

    namespace, name, port = f"ns-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}", free_port()
    service = k8s.V1Service(
        metadata=k8s.V1ObjectMeta(name=name, labels={"suite": "pod-api"}),
        spec=k8s.V1ServiceSpec(
            selector={"app": name}, ports=[k8s.V1ServicePort(name="http", port=port, target_port=port)]
        ),
    )
    created = core.create_namespaced_service(namespace, service)
    assert created.spec.cluster_ip == "127.0.0.1" and created.spec.type == "ClusterIP"
    assert created.metadata.uid and created.spec.ports[0].protocol == "TCP"
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_service(namespace, service)
    assert exists.value.status == 409
    for bad in (  # what the stand-in cannot model is refused, never silently misrouted
        k8s.V1ServiceSpec(ports=[k8s.V1ServicePort(port=80, target_port=8080)]),
        k8s.V1ServiceSpec(type="NodePort", ports=[k8s.V1ServicePort(port=80)]),
    ):
        with pytest.raises(ApiException) as refused:
            core.create_namespaced_service(
                namespace, k8s.V1Service(metadata=k8s.V1ObjectMeta(name="bad"), spec=bad)
            )
        assert refused.value.status == 422
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_service(
            namespace, k8s.V1Service(metadata=k8s.V1ObjectMeta(name="Not_DNS"), spec=service.spec)
        )
    assert invalid.value.status == 422
    assert core.read_namespaced_service(name, namespace).spec.selector == {"app": name}
    assert [
        s.metadata.name for s in core.list_namespaced_service(namespace, label_selector="suite=pod-api").items
    ] == [name]
    assert name in [s.metadata.name for s in core.list_service_for_all_namespaces().items]
    assert core.read_namespaced_endpoints(name, namespace).subsets in (None, [])  # nothing selected yet
    # the selected pod serves on the port; a client pod reaches it by the Service's DNS names
    server_code = (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(os.environ['WHO'].encode())\n"
        f"http.server.HTTPServer(('0.0.0.0', {port}), H).serve_forever()\n"
    )
    server = python_pod(f"{name}-server", server_code, env=[k8s.V1EnvVar(name="WHO", value="selected")])
    server.metadata.labels["app"] = name
    core.create_namespaced_pod(namespace, server)
    wait_for(core, f"{name}-server", namespace, {"Running"})
    (subset,) = core.read_namespaced_endpoints(name, namespace).subsets
    assert [(a.ip, a.target_ref.name) for a in subset.addresses] == [("127.0.0.1", f"{name}-server")]
    assert [(p.name, p.port) for p in subset.ports] == [("http", port)]
    client_code = (
        (
            "import time, urllib.request\n"
            "for host in ('NAME', 'NAME.NS.svc', 'NAME.NS.svc.cluster.local'):\n"
            "    for _ in range(100):\n"
            "        try:\n"
            "            print(host, urllib.request.urlopen(f'http://{host}:PORT/', timeout=5).read().decode(), flush=True)\n"
            "            break\n"
            "        except OSError:\n"
            "            time.sleep(0.2)\n"
        )
        .replace("NAME", name)
        .replace("NS", namespace)
        .replace("PORT", str(port))
    )
    core.create_namespaced_pod(namespace, python_pod(f"{name}-client", client_code))
    done = wait_for(core, f"{name}-client", namespace, {"Succeeded", "Failed"})
    log = core.read_namespaced_pod_log(f"{name}-client", namespace, _preload_content=False).data.decode()
    assert done.status.phase == "Succeeded" and log.splitlines() == [
        f"{name} selected",
        f"{name}.{namespace}.svc selected",
        f"{name}.{namespace}.svc.cluster.local selected",
    ], log
    # delete: gone at once; a second delete is 404
    deleted = core.delete_namespaced_service(name, namespace)
    assert deleted.metadata.name == name and (namespace, name) not in pod_api.cluster.services
    with pytest.raises(ApiException) as gone:
        core.delete_namespaced_service(name, namespace)
    assert gone.value.status == 404
    for pod in (f"{name}-server", f"{name}-client"):
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=1)
