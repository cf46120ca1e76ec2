"""DynamoDB state (boto3): one table, string keys ``pk``/``sk``, conditional writes for every change.

Item layout (identifier parts are escaped so ``#`` inside a run_id cannot collide with the separator):

* run record: ``pk = run#<dag>``, ``sk = <task>#<run_id>#<map_index>``; attributes ``v`` (version),
  ``st`` (status), ``up`` (updated_at, sortable text), ``g`` (incarnation id, new for every insert) and
  the record as JSON in ``d`` — or zlib-compressed in ``z`` when large, or, beyond DynamoDB's 400 KB
  item limit, in ``n`` chunk items ``pk = chunk#<dag>``, ``sk = <record sk>#<i>`` written in the same
  transaction as the record (each chunk carries ``g`` and ``v`` so a reader can tell a stale chunk).
* task state: ``pk = state#<namespace>#<dag>#<task>``, ``sk = <key>``; ``d``/``z`` as above and ``v``,
  a counter bumped on every write, on which compare-and-set conditions.

Runs of one DAG share a partition, so ``list_runs(dag_id=...)`` is a strongly consistent Query;
``list_runs()`` without a DAG is a Scan (an admin operation on a state table).

The endpoint and credentials come from boto3's own configuration (``AWS_ENDPOINT_URL``, the
environment, profiles, instance roles); the URI names the table and optionally the region.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_genius.core.errors import StateError, missing_extra
from airflow_genius.core.state._common import (
    dumps,
    escape,
    loads,
    parse_bool,
    record_from_json,
    record_to_json,
    refuse_password,
    sortable_time,
    unescape,
)
from airflow_genius.core.state.base import RunKey, RunRecord, StateManager, Status, TaskScope
from airflow_genius.core.state.faults import FaultBudget
from airflow_genius.core.uris import query_params, split_uri

#: JSON above this size is compressed (DynamoDB bills and limits by bytes).
COMPRESS_ABOVE = 32 * 1024
#: Largest payload kept in one item (the item limit is 400 KB including names and keys).
ITEM_PAYLOAD_MAX = 350_000
#: A transaction writes at most 100 items and 4 MB: the record plus this many chunks stays below both.
MAX_CHUNKS = 10
#: How often a read retries when chunks were replaced between reading the record and its chunks.
READ_ATTEMPTS = 10


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


#: Error codes DynamoDB answers while it sheds load: worth a retry within the fault budget.
_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)


#: Error codes of a request DynamoDB will never accept as sent — credentials it does not know or that
#: lack permission, a request it finds invalid: final at once, whatever the HTTP status says.
_REFUSED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "ValidationException",
    }
)


_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</")


def _fault_types() -> tuple[type[BaseException], ...]:
    """botocore's errors of a connection that failed or got no answer (retried within the budget)."""
    from botocore.exceptions import ConnectionClosedError, ConnectionError, ReadTimeoutError

    return (ConnectionError, ConnectionClosedError, ReadTimeoutError)


class DynamoDBStateManager(StateManager):
    """State in one DynamoDB table.

    >>> uri = "dynamodb://genius-state?region=eu-west-1&create=true"
    >>> state = DynamoDBStateManager.from_uri(uri)  # doctest: +SKIP
    >>> state.get_run(RunKey("etl", "clean", "manual__1"))  # doctest: +SKIP

    URI: ``dynamodb://TABLE`` with optional ``region=``, ``profile=`` and ``create=true`` (create the
    table, on-demand billing, and wait until it is active).
    """

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        create: bool = False,
        client: Any = None,
        budget: FaultBudget | None = None,
    ) -> None:
        """Open ``table``; pass ``client`` to reuse a configured boto3 DynamoDB client (an Airflow hook's)."""
        super().__init__(budget=budget)
        try:
            import boto3
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise missing_extra("boto3", "aws") from None
        if not table:
            raise StateError("dynamodb state URI needs a table name: dynamodb://TABLE?region=...")
        self.table = table
        self._client_error = ClientError
        self._owns_client = client is None
        if client is None:
            try:
                session = boto3.Session(profile_name=profile, region_name=region)
            except BotoCoreError as exc:  # an unknown profile
                raise StateError(f"cannot open dynamodb state table {table!r}: {exc}") from None
            # Low-level client: thread-safe (the heartbeat thread shares it), no resource-layer overhead.
            # Bounded attempts, no retries of botocore's own: the fault budget retries (faults.py).
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=min(self.budget.call_timeout, 5.0),
                read_timeout=self.budget.call_timeout,
            )
            client = session.client("dynamodb", config=config)
        self.client = client
        self._faults = _fault_types()
        try:
            if create:
                self._call("open", self._create_table)
            self._call("open", self._check_table)
        except (ClientError, BotoCoreError) as exc:  # no credentials, access denied, no region...
            raise StateError(
                f"cannot open dynamodb state table {table!r}: {' '.join(str(exc).split())}"
            ) from None

    @classmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> DynamoDBStateManager:
        refuse_password(uri)
        parts = split_uri(uri)
        params = query_params(uri)
        table = parts.netloc or parts.path.lstrip("/")
        return cls(
            table,
            region=params.get("region") or None,
            profile=params.get("profile") or None,
            create=parse_bool(params.get("create"), name="create"),
            budget=FaultBudget.from_env(env),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(table={self.table!r}, region={self.client.meta.region_name!r})"

    def close(self) -> None:
        if self._owns_client:  # a client passed in belongs to its caller
            self.client.close()

    # ---------------------------------------------------------------- faults
    def store_label(self) -> str:
        return f"dynamodb table {self.table!r}"

    def _is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, self._faults):
            return True
        if isinstance(exc, self._client_error):
            code = _code(exc)
            if code in _REFUSED:
                return False
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            return status >= 500 or code in _THROTTLED
        return False

    def _refusal(self, exc: BaseException) -> str | None:
        if not isinstance(exc, self._client_error):
            return None
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code not in _REFUSED and status not in (401, 403):
            return None
        message = str(exc.response.get("Error", {}).get("Message", ""))
        # An authorizer in front of the service may answer in XML, which botocore leaves unparsed.
        found = dict(_XML_FIELD.findall(message))
        code, message = found.get("Code", code), " ".join(found.get("Message", message).split())
        hint = (
            "the request is invalid as sent"
            if code == "ValidationException"
            else "check the AWS credentials, the region and the IAM permissions on the table"
        )
        return f"{code} in {exc.operation_name}: {message or exc} ({hint})"

    def _is_timeout(self, exc: BaseException) -> bool:
        from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

        return isinstance(exc, (ConnectTimeoutError, ReadTimeoutError))

    # ---------------------------------------------------------------- table
    def _create_table(self) -> None:
        try:
            self.client.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except self._client_error as exc:
            if _code(exc) != "ResourceInUseException":  # already there (or being created by a peer)
                raise
        self.client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )

    def _check_table(self) -> None:
        try:
            described = self.client.describe_table(TableName=self.table)["Table"]
        except self._client_error as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise StateError(
                    f"dynamodb state table {self.table!r} does not exist; create it (keys pk, sk: strings) "
                    "or add ?create=true to the URI"
                ) from None
            raise
        keys = {item["KeyType"]: item["AttributeName"] for item in described["KeySchema"]}
        if keys != {"HASH": "pk", "RANGE": "sk"}:
            raise StateError(
                f"dynamodb table {self.table!r} must have keys pk (hash) and sk (range), has {keys}"
            )

    def delete_table(self) -> None:
        """Delete the table (tests, tear-down). Irreversible."""
        self.client.delete_table(TableName=self.table)

    # ---------------------------------------------------------------- keys
    @staticmethod
    def _run_pk(dag_id: str) -> str:
        return f"run#{escape(dag_id, '#')}"

    @staticmethod
    def _run_sk(key: RunKey) -> str:
        return f"{escape(key.task_id, '#')}#{escape(key.run_id, '#')}#{key.map_index}"

    def _run_item_key(self, key: RunKey) -> dict[str, Any]:
        return {"pk": _s(self._run_pk(key.dag_id)), "sk": _s(self._run_sk(key))}

    @staticmethod
    def _scope_pk(scope: TaskScope) -> str:
        return "state#" + "#".join(escape(part, "#") for part in scope.parts())

    # ---------------------------------------------------------------- payload codec
    @staticmethod
    def _encode(text: str) -> tuple[str, Any]:
        """(attribute, value) for a JSON text: inline ``d``, or compressed ``z`` when large.

        Attribute names are short and never DynamoDB reserved words; expressions alias them anyway.
        """
        if len(text) <= COMPRESS_ABOVE:
            return "d", _s(text)
        return "z", {"B": zlib.compress(text.encode("utf-8"), 6)}

    @staticmethod
    def _decode(item: Mapping[str, Any]) -> str | bytes:
        if "d" in item:
            return item["d"]["S"]  # type: ignore[no-any-return]
        return zlib.decompress(item["z"]["B"])

    # ---------------------------------------------------------------- run records
    def _record_writes(self, record: RunRecord) -> tuple[dict[str, Any], list[bytes]]:
        """The record's payload attributes and, when it is too large for one item, its chunks."""
        attribute, value = self._encode(record_to_json(record))
        if attribute == "d" or len(value["B"]) <= ITEM_PAYLOAD_MAX:
            return {attribute: value}, []
        blob: bytes = value["B"]
        chunks = [blob[i : i + ITEM_PAYLOAD_MAX] for i in range(0, len(blob), ITEM_PAYLOAD_MAX)]
        if len(chunks) > MAX_CHUNKS:
            raise StateError(
                f"{record.key}: record is {len(blob) / 1e6:.1f} MB compressed, more than DynamoDB state can "
                f"hold ({MAX_CHUNKS * ITEM_PAYLOAD_MAX / 1e6:.1f} MB); offload large results to a blob store"
            )
        return {"n": _n(len(chunks))}, chunks

    def _chunk_puts(self, record: RunRecord, incarnation: str, chunks: list[bytes]) -> list[dict[str, Any]]:
        pk = f"chunk#{escape(record.key.dag_id, '#')}"
        sk = self._run_sk(record.key)
        return [
            {"Put": {"TableName": self.table, "Item": {
                "pk": _s(pk), "sk": _s(f"{sk}#{index}"), "g": _s(incarnation), "v": _n(record.version),
                "b": {"B": chunk},
            }}}
            for index, chunk in enumerate(chunks)
        ]  # fmt: skip

    def _read(self, key: RunKey) -> RunRecord | None:
        for _ in range(READ_ATTEMPTS):
            item = self.client.get_item(
                TableName=self.table, Key=self._run_item_key(key), ConsistentRead=True
            ).get("Item")
            if item is None:
                return None
            record = self._record_from_item(key, item)
            if record is not None:
                return record
        raise StateError(f"{key}: record chunks kept changing while reading; giving up")

    def _record_from_item(self, key: RunKey, item: Mapping[str, Any]) -> RunRecord | None:
        """Decode a record item; None if its chunks were replaced meanwhile (the caller re-reads)."""
        version = int(item["v"]["N"])
        if "n" not in item:
            return record_from_json(self._decode(item), version)
        blob = self._read_chunks(key, item["g"]["S"], version, int(item["n"]["N"]))
        return None if blob is None else record_from_json(zlib.decompress(blob), version)

    def _read_chunks(self, key: RunKey, incarnation: str, version: int, count: int) -> bytes | None:
        prefix = self._run_sk(key) + "#"
        pieces: dict[int, bytes] = {}
        for item in self._query(
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
            ExpressionAttributeNames={"#pk": "pk", "#sk": "sk"},
            ExpressionAttributeValues={":pk": _s(f"chunk#{escape(key.dag_id, '#')}"), ":prefix": _s(prefix)},
        ):
            if item["g"]["S"] == incarnation and int(item["v"]["N"]) == version:
                pieces[int(item["sk"]["S"][len(prefix) :])] = item["b"]["B"]
        if any(index not in pieces for index in range(count)):
            return None
        return b"".join(pieces[index] for index in range(count))

    def _insert(self, record: RunRecord) -> bool:
        payload, chunks = self._record_writes(record)
        incarnation = uuid.uuid4().hex
        item = {
            **self._run_item_key(record.key),
            "v": _n(record.version),
            "st": _s(record.status.value),
            "up": _s(sortable_time(record.updated_at)),
            "g": _s(incarnation),
            **payload,
        }
        condition = "attribute_not_exists(pk)"
        if not chunks:
            return self._conditional(
                lambda: self.client.put_item(TableName=self.table, Item=item, ConditionExpression=condition)
            )
        head = {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": condition}}
        return self._transaction([head, *self._chunk_puts(record, incarnation, chunks)])

    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        payload, chunks = self._record_writes(record)
        # Set the payload attribute in use and drop the other two representations.
        (attribute,) = payload
        dropped = ", ".join(f"#{name}" for name in ("d", "z", "n") if name != attribute)
        update = {
            "TableName": self.table,
            "Key": self._run_item_key(record.key),
            "UpdateExpression": (
                f"SET #v = :v, #st = :st, #up = :up, #{attribute} = :payload REMOVE {dropped}"
            ),
            "ConditionExpression": "#v = :expected",
            "ExpressionAttributeNames": {f"#{n}": n for n in ("v", "st", "up", "d", "z", "n")},
            "ExpressionAttributeValues": {
                ":v": _n(record.version),
                ":st": _s(record.status.value),
                ":up": _s(sortable_time(record.updated_at)),
                ":payload": payload[attribute],
                ":expected": _n(expected_version),
            },
        }
        if not chunks:
            return self._conditional(lambda: self.client.update_item(**update))
        # The chunks need the incarnation id; it only changes on insert, so read it (cheap: one attribute).
        found = self.client.get_item(
            TableName=self.table, Key=update["Key"], ConsistentRead=True, ProjectionExpression="#g, #v",
            ExpressionAttributeNames={"#g": "g", "#v": "v"},
        ).get("Item")  # fmt: skip
        if found is None or int(found["v"]["N"]) != expected_version:
            return False
        head = {"Update": update}
        return self._transaction([head, *self._chunk_puts(record, found["g"]["S"], chunks)])

    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        # First the small projection (keys, updated_at, status), then the full items of the newest.
        names = {"#sk": "sk", "#up": "up", "#st": "st", "#pk": "pk"}
        values: dict[str, Any] = {}
        filters: list[str] = []
        if status is not None:
            filters.append("#st = :st")
            values[":st"] = _s(status.value)
        task_prefix = None if task_id is None else f"{escape(task_id, '#')}#"
        if dag_id is not None:
            condition = "#pk = :pk"
            values[":pk"] = _s(self._run_pk(dag_id))
            if task_prefix is not None:
                condition += " AND begins_with(#sk, :task)"
                values[":task"] = _s(task_prefix)
            request: dict[str, Any] = {"KeyConditionExpression": condition}
            pages = self._query
        else:
            filters.append("begins_with(#pk, :runs)")
            values[":runs"] = _s("run#")
            if task_prefix is not None:
                filters.append("begins_with(#sk, :task)")
                values[":task"] = _s(task_prefix)
            request = {}
            pages = self._scan
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        heads = list(pages(
            ProjectionExpression="#pk, #sk, #up, #st", ExpressionAttributeNames=names,
            ExpressionAttributeValues=values, **request,
        ))  # fmt: skip
        heads.sort(key=lambda item: item["up"]["S"], reverse=True)
        records = self._batch_read([{"pk": item["pk"], "sk": item["sk"]} for item in heads[:limit]])
        # A record may have moved on between the two steps: filter again on what was read.
        records = [r for r in records if status is None or r.status is status]
        records.sort(key=lambda r: r.updated_at, reverse=True)
        return records[:limit]

    def _batch_read(self, keys: list[dict[str, Any]]) -> list[RunRecord]:
        records: list[RunRecord] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            while pending:
                answer = self.client.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(self.table, []):
                    key = _run_key_from_item(item)
                    record = self._record_from_item(key, item)
                    if record is None:  # chunks replaced meanwhile: read it the careful way
                        record = self._read(key)
                    if record is not None:
                        records.append(record)
                pending = answer.get("UnprocessedKeys") or {}
        return records

    def _delete(self, key: RunKey) -> bool:
        old = self.client.delete_item(
            TableName=self.table, Key=self._run_item_key(key), ReturnValues="ALL_OLD"
        ).get("Attributes")
        if not old:
            return False
        # Even a record that is small now may have left chunks behind when it was large.
        self._delete_chunks(key, old["g"]["S"])
        return True

    def _delete_chunks(self, key: RunKey, incarnation: str) -> None:
        """Remove the chunks of one incarnation (a re-created record has a new one and keeps its own)."""
        prefix = self._run_sk(key) + "#"
        doomed = [
            {"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}}
            for item in self._query(
                KeyConditionExpression="#pk = :pk AND begins_with(#sk, :prefix)",
                ExpressionAttributeNames={"#pk": "pk", "#sk": "sk", "#g": "g"},
                ExpressionAttributeValues={
                    ":pk": _s(f"chunk#{escape(key.dag_id, '#')}"),
                    ":prefix": _s(prefix),
                    ":g": _s(incarnation),
                },
                FilterExpression="#g = :g",
                ProjectionExpression="#pk, #sk",
            )
        ]  # fmt: skip
        for start in range(0, len(doomed), 25):
            pending: dict[str, Any] = {self.table: doomed[start : start + 25]}
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    # ---------------------------------------------------------------- task state
    def _state_item_key(self, scope: TaskScope, key: str) -> dict[str, Any]:
        return {"pk": _s(self._scope_pk(scope)), "sk": _s(key)}

    def _state_payload(self, scope: TaskScope, key: str, value: Any) -> tuple[str, Any]:
        attribute, encoded = self._encode(dumps(value))
        if attribute == "z" and len(encoded["B"]) > ITEM_PAYLOAD_MAX:
            raise StateError(
                f"task state {key!r} of {'/'.join(scope.parts())} is too large for DynamoDB "
                f"({len(encoded['B']) / 1e3:.0f} KB compressed, limit {ITEM_PAYLOAD_MAX / 1e3:.0f} KB)"
            )
        return attribute, encoded

    def _state_get_item(self, scope: TaskScope, key: str) -> dict[str, Any] | None:
        return self.client.get_item(  # type: ignore[no-any-return]
            TableName=self.table, Key=self._state_item_key(scope, key), ConsistentRead=True
        ).get("Item")

    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]:
        item = self._state_get_item(scope, key)
        return (False, None) if item is None else (True, loads(self._decode(item)))

    def _state_write(self, scope: TaskScope, key: str, value: Any, condition: dict[str, Any] | None) -> bool:
        attribute, encoded = self._state_payload(scope, key, value)
        other = "z" if attribute == "d" else "d"
        request: dict[str, Any] = {
            "TableName": self.table,
            "Key": self._state_item_key(scope, key),
            # The counter moves on every write: compare-and-set conditions on it.
            "UpdateExpression": f"SET #{attribute} = :payload REMOVE #{other} ADD #v :one",
            "ExpressionAttributeNames": {f"#{attribute}": attribute, f"#{other}": other, "#v": "v"},
            "ExpressionAttributeValues": {":payload": encoded, ":one": _n(1)},
        }
        if condition is not None:
            request["ConditionExpression"] = condition["expression"]
            request["ExpressionAttributeNames"].update(condition.get("names", {}))
            request["ExpressionAttributeValues"].update(condition.get("values", {}))
        return self._conditional(lambda: self.client.update_item(**request))

    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None:
        self._state_write(scope, key, value, None)

    def _state_delete(self, scope: TaskScope, key: str) -> bool:
        old = self.client.delete_item(
            TableName=self.table, Key=self._state_item_key(scope, key), ReturnValues="ALL_OLD"
        ).get("Attributes")
        return bool(old)

    def _state_list(self, scope: TaskScope) -> dict[str, Any]:
        return {
            item["sk"]["S"]: loads(self._decode(item))
            for item in self._query(
                KeyConditionExpression="#pk = :pk",
                ExpressionAttributeNames={"#pk": "pk"},
                ExpressionAttributeValues={":pk": _s(self._scope_pk(scope))},
            )
        }

    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        # Read, compare by JSON value, then write on condition that the counter did not move.
        for _ in range(16):
            item = self._state_get_item(scope, key)
            current = None if item is None else loads(self._decode(item))
            if current != expected:
                return False
            if item is None:
                condition = {"expression": "attribute_not_exists(#pk)", "names": {"#pk": "pk"}}
            else:
                condition = {"expression": "#v = :seen", "values": {":seen": item["v"]}}
            if self._state_write(scope, key, value, condition):
                return True
        return False

    # ---------------------------------------------------------------- plumbing
    def _conditional(self, call: Any) -> bool:
        """Run a conditional write; False when its condition failed."""
        try:
            call()
        except self._client_error as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _transaction(self, items: list[dict[str, Any]]) -> bool:
        """Run a write transaction whose first item is conditional; False when that condition failed."""
        try:
            self.client.transact_write_items(TransactItems=items)
        except self._client_error as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if _code(exc) == "TransactionCanceledException" and any(
                reason.get("Code") == "ConditionalCheckFailed" for reason in reasons
            ):
                return False
            raise
        return True

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages("query", request)

    def _scan(self, **request: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages("scan", request)

    def _pages(self, operation: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        call = getattr(self.client, operation)
        request = {"TableName": self.table, "ConsistentRead": True, **request}
        while True:
            answer = call(**request)
            yield from answer.get("Items", [])
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _run_key_from_item(item: Mapping[str, Any]) -> RunKey:
    dag = unescape(item["pk"]["S"][len("run#") :])
    task, run_id, map_index = item["sk"]["S"].split("#")
    return RunKey(dag, unescape(task), unescape(run_id), int(map_index))
