"""moto's server for the test rig, applying one request at a time.

    python scripts/moto_server.py [--host 127.0.0.1] [--port 5055]

moto's backends keep no locks, and `moto_server` serves requests on many threads: two concurrent
conditional writes (DynamoDB ``ConditionExpression``, S3 ``IfNoneMatch``) can then both pass their
check, which the real services never allow. Our state backends rely on that atomicity, and the race
tests prove it — against an engine that provides it. So each request runs under one lock (the server
still accepts connections on many threads); everything else is moto's own server, unchanged.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


class OneRequestAtATime:
    """WSGI middleware: the wrapped app handles one request at a time, response body included."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5055)
    options = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        options.host, options.port, OneRequestAtATime(app), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
