"""No secret in any URI: user info or query (any case, percent-encoded names), refused with one line on
every core surface — the TaskSpec, state stores, streams, model stores, the Geniusfile, the XCom path —
and masked by ``redact`` wherever a URI is shown. No engine is needed: every refusal happens before a
connection is attempted.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from airflow_genius.core.errors import GeniusError, SpecError, StateError
from airflow_genius.core.geniusfile import GeniusfileError, parse_geniusfile
from airflow_genius.core.models import open_model_manager
from airflow_genius.core.spec import build_spec
from airflow_genius.core.state import open_state, state_class
from airflow_genius.core.streams.base import StreamError, parse_stream_uri
from airflow_genius.core.uris import embedded_secret, has_password, redact, secret_problem
from airflow_genius.xcom.config import check_xcom_path

S = "hunter2-S3CRET"

#: (URI, what the message names: the query parameter as written, or "" for the user info)
SECRET_URIS = [
    pytest.param(f"redis://:{S}@cache:6379/0", "", id="userinfo"),
    pytest.param(f"redis://cache:6379/0?password={S}", "password", id="password"),
    pytest.param(f"redis://cache:6379/0?prefix=g&PassWord={S}", "PassWord", id="mixed-case"),
    pytest.param(f"postgresql://app@db/genius?sslpassword={S}", "sslpassword", id="sslpassword"),
    pytest.param(f"postgresql://app@db/genius?pass%77ord={S}", "pass%77ord", id="percent-encoded-name"),
    pytest.param(f"dynamodb://runs?aws_secret_access_key={S}", "aws_secret_access_key", id="aws-secret"),
    pytest.param(f"rediss://cache/0?token={S}", "token", id="token"),
    pytest.param(f"redis://cache/0?client_secret={S}", "client_secret", id="secret"),
    pytest.param(f"redis://cache/0?X-API-Key={S}", "X-API-Key", id="api-key"),
    pytest.param(f"redis://cache/0?auth={S}", "auth", id="auth"),
    pytest.param(f"sqlite:////var/x.db?Credentials={S}", "Credentials", id="credentials"),
    pytest.param(f"s3://bucket/p?X-Amz-Signature={S}", "X-Amz-Signature", id="presigned"),
    pytest.param(f"dynamodb://runs?endpoint_url=http%3A%2F%2Fu%3A{S}%40h", "endpoint_url", id="nested-uri"),
    pytest.param(f"redis://cache/0?pwd={S}#frag", "pwd", id="pwd-with-fragment"),
]

#: Parameters that hold no secret: libpq's file paths and auth methods, genius's own parameters.
CLEAN_URIS = [
    "postgresql://app@db:5432/genius?sslmode=verify-full&sslkey=/k.pem&sslcert=/c.pem&sslrootcert=/ca.pem",
    "postgresql://app@db/genius?passfile=/home/app/.pgpass&require_auth=scram-sha-256&table_prefix=g",
    "redis://app@cache:6379/0?prefix=genius",
    "dynamodb://runs?region=eu-west-1&create=true&profile=dev",
    "sqlite:///tmp/streams.db?stream=events&group=counter",
    "s3://bucket/prefix/2024",
    "/data/quotes",
    "redis://:@cache/0",  # an empty password is no secret
]


def one_line_without_secret(message: str) -> None:
    assert "\n" not in message
    assert S not in message
    assert S.lower() not in message.lower()


# ---------------------------------------------------------------------- uris
@pytest.mark.parametrize(("uri", "named"), SECRET_URIS)
def test_secrets_are_found_and_redacted(uri: str, named: str) -> None:
    assert has_password(uri)
    assert embedded_secret(uri) == (f"query parameter {named!r}" if named else "")
    shown = redact(uri)
    assert "***" in shown and S not in shown
    problem = secret_problem(uri, "put it elsewhere")
    assert problem is not None and (named in problem) and problem.endswith("; put it elsewhere")


@pytest.mark.parametrize("uri", CLEAN_URIS)
def test_parameters_without_secrets_pass(uri: str) -> None:
    assert not has_password(uri)
    assert redact(uri) == uri
    assert secret_problem(uri, "x") is None


def test_redact_keeps_everything_else_and_never_raises() -> None:
    assert redact("redis://app:pw@cache:6379/0?prefix=g&token=t&group=x") == (
        "redis://app:***@cache:6379/0?prefix=g&token=***&group=x"
    )
    # urlsplit would raise on these (bad port, unbalanced IPv6 bracket): redaction must not
    assert redact("redis://:pw@cache:port/0") == "redis://:***@cache:port/0"
    assert redact("redis://[::1/0?password=pw") == "redis://[::1/0?password=***"


# ---------------------------------------------------------------------- the TaskSpec
SPEC_CASES = [
    pytest.param({"state_uri": f"redis://:{S}@cache/0"}, "state.uri", "GENIUS_STATE_PASSWORD", id="state-userinfo"),
    pytest.param({"state_uri": f"redis://cache/0?password={S}"}, "state.uri", "GENIUS_STATE_PASSWORD", id="state-query"),
    pytest.param({"state_uri": f"postgresql://app@db/g?SSLPassWord={S}"}, "state.uri", "GENIUS_STATE_PASSWORD",
                 id="state-sslpassword"),
    pytest.param({"state_uri": f"postgres://db/g?pass%77ord={S}"}, "state.uri", "GENIUS_STATE_PASSWORD",
                 id="state-encoded"),
    pytest.param({"state_uri": f"dynamodb://runs?aws_secret_access_key={S}"}, "state.uri", "GENIUS_STATE_PASSWORD",
                 id="state-dynamodb"),
    pytest.param({"state_uri": f"sqlite:////var/state.db?token={S}"}, "state.uri", "GENIUS_STATE_PASSWORD",
                 id="state-sqlite"),
    pytest.param({"input_uri": f"redis://cache/0?stream=s&group=g&password={S}", "output_uri": "/out"},
                 "input.uri", "GENIUS_STATE_PASSWORD", id="stream-input"),
    pytest.param({"input_uri": "/in", "output_uri": f"sqlite:///s.db?stream=s&Auth_Token={S}"},
                 "output.uri", "GENIUS_STATE_PASSWORD", id="stream-output"),
    pytest.param({"input_uri": "/in", "output_uri": f"s3://bucket/out?X-Amz-Signature={S}"},
                 "output.uri", "environment", id="data-output"),
    pytest.param({"input_uri": f"s3://key:{S}@bucket/in", "output_uri": "/out"}, "input.uri", "environment",
                 id="data-input"),
    pytest.param({"model_uri": f"git+https://u:{S}@git.example.com/m.git"}, "model.uri", "credential helper",
                 id="model-git"),
    pytest.param({"model_uri": f"wandb://team/project?api_key={S}"}, "model.uri", "credential", id="model-wandb"),
    pytest.param({"model_uri": f"s3://models/bert?aws_secret_access_key={S}"}, "model.uri", "credential",
                 id="model-s3"),
]  # fmt: skip


@pytest.mark.parametrize(("kwargs", "field", "instead"), SPEC_CASES)
def test_spec_refuses_a_secret_in_any_uri(kwargs: dict[str, Any], field: str, instead: str) -> None:
    kind = "bolt" if "input_uri" in kwargs else "task"
    with pytest.raises(SpecError) as caught:
        build_spec("pkg.mod:Task", "go", kind=kind, dag_id="d", task_id="t", run_id="r", **kwargs)
    assert caught.value.field == field
    message = str(caught.value)
    one_line_without_secret(message)
    assert "must not embed" in message and instead in message and "***" in message


# ---------------------------------------------------------------------- stores, streams, models, XCom
@pytest.mark.parametrize(
    "uri",
    [
        f"redis://127.0.0.1:6379/15?password={S}",
        f"postgresql://postgres@127.0.0.1:5432/genius_test?sslpassword={S}",
        f"dynamodb://runs?aws_session_token={S}",
        f"sqlite:////tmp/genius-never.db?secret={S}",
    ],
)
def test_state_stores_refuse_a_query_password_before_connecting(uri: str) -> None:
    for opener in (lambda: open_state(uri), lambda: state_class(uri).from_uri(uri, {})):
        with pytest.raises(StateError) as caught:
            opener()
        one_line_without_secret(str(caught.value))
        assert "GENIUS_STATE_PASSWORD" in str(caught.value)


@pytest.mark.parametrize(
    "uri", [f"redis://cache/0?stream=s&group=g&PASSWORD={S}", f"sqlite:///s.db?stream=s&access_token={S}"]
)
def test_stream_uris_refuse_a_query_password(uri: str) -> None:
    with pytest.raises(StreamError) as caught:
        parse_stream_uri(uri, need_group=True)
    one_line_without_secret(str(caught.value))
    assert "GENIUS_STATE_PASSWORD" in str(caught.value)


@pytest.mark.parametrize(
    "uri", [f"wandb://team/project?api_key={S}", f"git+https://git.example.com/m.git?private_token={S}"]
)
def test_model_stores_refuse_a_query_secret(uri: str) -> None:
    with pytest.raises(GeniusError) as caught:
        open_model_manager(uri)
    one_line_without_secret(str(caught.value))
    assert "embeds a password" in str(caught.value)


@pytest.mark.parametrize("path", [f"s3://bucket/xcom?aws_secret_access_key={S}", f"s3://key:{S}@bucket/xcom"])
def test_xcom_path_refuses_credentials(path: str) -> None:
    with pytest.raises(ValueError, match=r"^\[genius\] xcom_path must not embed credentials") as caught:
        check_xcom_path(path)
    one_line_without_secret(str(caught.value))


# ---------------------------------------------------------------------- the Geniusfile
GENIUSFILE = textwrap.dedent(
    """\
    version: 1
    dag: {id: quotes, schedule: "@daily", start_date: 2024-01-01}
    defaults:
      state: {uri: "redis://cache:6379/0?prefix=genius"}
    spouts:
      fetch:
        class: airflow_genius.examples.tasks:QuoteSpout
        method: fetch
        output: /data/quotes
    bolts:
      count:
        class: airflow_genius.examples.tasks:WordCount
        method: count
        input: fetch
        output: /data/counts
    """
)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        pytest.param(
            "?prefix=genius", f"?prefix=genius&PassWord={S}", "defaults.state.uri", id="state-query-password"
        ),
        pytest.param(
            "    output: /data/counts\n",
            f"    output: /data/counts\n    model: {{uri: 'wandb://team/p?api_key={S}'}}\n",
            "bolts.count.model.uri",
            id="model-api-key",
        ),
        pytest.param(
            "output: /data/counts", f"output: 's3://lake/{{{{ ds }}}}?X-Amz-Security-Token={S}'",
            "bolts.count.output", id="templated-output",
        ),
        pytest.param("output: /data/quotes", "output: ${LAKE}", "spouts.fetch.output", id="expanded-from-env"),
    ],
)  # fmt: skip
def test_geniusfile_refuses_a_secret_in_any_uri(old: str, new: str, field: str) -> None:
    assert old in GENIUSFILE
    text = GENIUSFILE.replace(old, new, 1)
    with pytest.raises(GeniusfileError) as caught:
        parse_geniusfile(text, env={"LAKE": f"s3://lake/quotes?token={S}"})
    message = str(caught.value)
    assert message.startswith(f"{field}: must not embed"), message
    one_line_without_secret(message)


@pytest.mark.parametrize("value", ["5", "[redis://cache/0]", "''", "{uri: x}"])
def test_geniusfile_state_uri_must_be_text(value: str) -> None:
    text = GENIUSFILE.replace('"redis://cache:6379/0?prefix=genius"', value, 1)
    with pytest.raises(GeniusfileError) as caught:
        parse_geniusfile(text, env={})
    assert str(caught.value).startswith("defaults.state.uri: expected a state store URI, got ")


def test_the_clean_geniusfile_parses() -> None:
    assert parse_geniusfile(GENIUSFILE, env={}).summary() == "1 spout, 1 bolt"
