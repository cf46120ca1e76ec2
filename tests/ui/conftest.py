"""Fixtures of the browser tests: one real Airflow stack per session (every UI test module shares it),
one headless chromium, artifacts.

Needs Debian's chromium at /usr/bin/chromium and the ``playwright`` Python package (no browser download:
Playwright drives the system chromium). ``scripts/rig/browser.sh`` installs both. A missing piece fails
the test with that hint; it never turns into a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ui.airflow_stack import AirflowStack

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("GENIUS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The DAG files the stack serves: the example under test plus this folder's test DAGs.
DAG_FILES = (ROOT / "dags_examples" / "genius_batch_pipeline.py", Path(__file__).parent / "dags")
#: How long a browser action, navigation or ``expect`` assertion may take (ms). Generous on purpose:
#: on a loaded machine the API server, the scheduler and chromium share the cores with the tests.
UI_TIMEOUT_MS = 90_000


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go: ``.genius/artifacts/ui/<time>/`` (git-ignored); printed for the developer."""
    folder = ROOT / ".genius" / "artifacts" / "ui" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nUI test artifacts: {folder}")
    return folder


@pytest.fixture(scope="session")
def redis_store(redis_url: str) -> Iterator[str]:
    """A Redis state store URI with a prefix unique to this session (its records deleted afterwards)."""
    from airflow_genius.core.state import open_state

    uri = f"{redis_url}?prefix=ui{uuid.uuid4().hex[:10]}"
    yield uri
    with open_state(uri) as state:
        for record in state.list_runs(limit=1000):
            state.delete_run(record.key)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_store: str, artifacts: Path
) -> Iterator[AirflowStack]:
    """Airflow 3 (api-server, scheduler, dag-processor) serving the example DAG, the dashboard reading the
    stack's SQLite store and the Redis store."""
    home = tmp_path_factory.mktemp("ui_airflow_home")
    dags = home / "dags"
    dags.mkdir()
    for source in DAG_FILES:
        for path in sorted(source.glob("*.py")) if source.is_dir() else [source]:
            (dags / path.name).symlink_to(path)
    sqlite_store = f"sqlite:///{home}/genius/state.db"
    extra_env = {
        "AIRFLOW__GENIUS__DASHBOARD_STATE_URIS": f"{sqlite_store}, {redis_store}",
        # tests/ holds genius_samples (the task classes of the test DAGs)
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    }
    stack = AirflowStack(home, dags, extra_env=extra_env)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        for name in ("api-server", "scheduler", "dag-processor"):
            log = home / f"{name}.log"
            if log.exists():
                shutil.copy(log, artifacts / f"{name}.log")


@pytest.fixture(scope="session")
def token(stack: AirflowStack) -> str:
    """A JWT for the stack's REST API."""
    return stack.token()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (one per session)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: `.venv/bin/pip install playwright` (or scripts/rig/browser.sh)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (or scripts/rig/browser.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def page(browser: Any, stack: AirflowStack) -> Iterator[Any]:
    """A browser page logged in to the stack through the SimpleAuthManager login form."""
    from playwright.sync_api import expect

    # expect() has its own default (5 s), separate from the context's action timeout
    expect.set_options(timeout=UI_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{stack.url}/dags")
    page.get_by_label("Username").fill(stack.user)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    # back on the DAG list, whatever query string the UI adds to it
    expect(page).to_have_url(re.compile(r"/dags/?(\?.*)?$"))
    yield page
    context.close()
