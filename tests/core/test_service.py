"""The service contract: a task method that serves until stopped, recorded where it listens and when it
became ready; SIGTERM is its normal end (SUCCESS)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.private_stores import free_port

from airflow_genius.core import Status, build_spec, open_state
from airflow_genius.core.errors import SpecError
from airflow_genius.core.runtime import run_key
from airflow_genius.core.service import ServiceInfo, ServiceNotReady, client_env, wait_ready

TESTS_DIR = Path(__file__).resolve().parents[1]


def _launch(
    tmp_path: Path, method: str = "serve", *, ready_timeout: float = 30.0, **kwargs: Any
) -> tuple[subprocess.Popen[str], Any, int]:
    port = free_port()
    spec = build_spec(
        "airflow_genius.examples.tasks:EchoService"
        if method == "serve"
        else "genius_samples.tasks:Exploding",
        method,
        kwargs=kwargs,
        state_uri=f"sqlite:///{tmp_path}/state.db",
        dag_id="svc",
        task_id="echo",
        run_id="r1",
        service_port=port,
        ready_timeout=ready_timeout,
    )
    (tmp_path / "spec.json").write_text(spec.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", str(tmp_path / "spec.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
    )
    return process, spec, port


def _service_info(
    tmp_path: Path, spec: Any, *, timeout: float = 60.0, want: str = "ready_at"
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with open_state(f"sqlite:///{tmp_path}/state.db") as state:
        while time.monotonic() < deadline:
            record = state.get_run(run_key(spec))
            service = (record.info.get("service") or {}) if record else {}
            if want in service:
                return dict(service)
            time.sleep(0.05)
    raise TimeoutError(f"the record never got service.{want}")


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_service_records_where_it_listens_serves_and_ends_success_on_sigterm(tmp_path: Path) -> None:
    process, spec, port = _launch(tmp_path, delay=0.5)
    try:
        service = _service_info(tmp_path, spec)
        assert service["port"] == port and service["name"] == "echo" and service["health_path"] == "/health"
        assert service["url"] == f"http://{service['hostname']}:{port}" and service["ready"] is True
        assert service["ready_seconds"] >= 0.5  # the health path answered only after the model "loaded"
        assert _post(f"http://127.0.0.1:{port}/echo", {"q": 1}) == {"echo": {"q": 1}, "service": "echo"}
        # the advertised address reaches it too (what clients on other machines get)
        assert _post(f"{service['url']}/echo", [1, 2]) == {"echo": [1, 2], "service": "echo"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    with open_state(f"sqlite:///{tmp_path}/state.db") as state:
        record = state.require_run(run_key(spec))
    assert record.status is Status.SUCCESS
    assert record.result["stopped"] == "received SIGTERM" and record.result["ready"] is True
    assert record.result["service"] == "echo" and record.result["served_seconds"] > 0.5


def test_a_service_that_never_answers_is_recorded_not_ready(tmp_path: Path) -> None:
    process, spec, _ = _launch(tmp_path, delay=3600, ready_timeout=1.0)
    try:
        service = _service_info(tmp_path, spec, want="error")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert service["ready"] is False and "did not answer 2xx within 1s" in service["error"]


def test_a_service_method_that_raises_ends_failed(tmp_path: Path) -> None:
    process, spec, _ = _launch(tmp_path, method="run", message="no model")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    with open_state(f"sqlite:///{tmp_path}/state.db") as state:
        record = state.require_run(run_key(spec))
    assert record.status is Status.FAILED and record.error is not None
    assert record.error["message"] == "no model"


def test_serve_http_answers_errors_as_json(tmp_path: Path) -> None:
    process, spec, port = _launch(tmp_path)
    try:
        _service_info(tmp_path, spec)
        for path, data, status in (("/nope", b"{}", 404), ("/echo", b"{not json", 400)):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST")
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=10)
            assert caught.value.code == status
            assert set(json.loads(caught.value.read())) == {"error", "message"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def test_wait_ready_is_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(ServiceNotReady, match=r"did not answer 2xx within 0\.5s"):
        wait_ready(f"http://127.0.0.1:{free_port()}/health", timeout=0.5)
    assert time.monotonic() - started < 5


def test_client_env_from_published_service() -> None:
    info = ServiceInfo("llm", "fe80::1", 8000)
    assert info.url == "http://[fe80::1]:8000"
    assert client_env(info.to_dict()) == {
        "SERVICE_NAME": "llm",
        "SERVICE_HOSTNAME": "fe80::1",
        "SERVICE_PORT": "8000",
        "SERVICE_URL": "http://[fe80::1]:8000",
    }


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"port": 0}, "service.port: expected a TCP port (1-65535), got 0"),
        ({"port": 70000}, "service.port: expected a TCP port (1-65535), got 70000"),
        ({"port": True}, "service.port: expected a TCP port (1-65535), got True"),
        ({"port": "80"}, "service.port: expected a TCP port (1-65535), got '80'"),
        ({"port": 80, "health_path": "health"}, "service.health_path: expected a URL path starting with '/'"),
        ({"port": 80, "health_path": "/a b"}, "service.health_path: expected a URL path starting with '/'"),
        ({"port": 80, "health_path": "/h?x=1"}, "service.health_path: expected a URL path starting with '/'"),
        ({"port": 80, "name": "a b"}, "service.name: expected a name of letters, digits"),
        ({"port": 80, "name": "-x"}, "service.name: expected a name of letters, digits"),
        ({"port": 80, "ready_timeout": 0}, "service.ready_timeout: expected seconds > 0"),
        ({"port": 80, "ready_timeout": float("inf")}, "expected a finite number"),
        ({"port": 80, "timeout": 5}, "service.timeout: unknown field"),
    ],
)
def test_bad_service_sections_are_one_line(service: dict[str, Any], message: str) -> None:
    from airflow_genius.core.spec import TaskSpec

    spec = build_spec("a.b:C", "m", dag_id="d", task_id="t", run_id="r").to_dict()
    spec["service"] = service
    with pytest.raises(SpecError) as refused:
        TaskSpec.from_dict(spec)
    assert message in str(refused.value) and "\n" not in str(refused.value)
