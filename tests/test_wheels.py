"""Adoption as a team with its own Flask API would do it: from the wheels, outside the checkout.

The test builds both wheels, installs the admin app's wheel in one fresh virtual environment
and only the engine's wheel in another, next to a sample API whose own package is named
``app`` (as in the Flask tutorial). It runs everything from a temporary directory over real
HTTP: the admin app under gunicorn, the sample API under ``flask run``. Control-plane mode and
database mode each get the same checks: the sample API follows the policy, a change made in
the admin app reaches it within a second, its refusals reach the admin app's request log; in
control-plane mode it also keeps its last policy when the admin app stops, and starts from its
cache file while the admin app is still down.

Slow (two virtual environments, several servers): marked ``slow`` and ``wheels``; it uses a
database of its own, so it can run beside the rest of the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.slow, pytest.mark.wheels]

ROOT = Path(__file__).resolve().parent.parent
SHOP = "https://shop.example.com"
NEW = "https://new.example.com"
EVIL = "https://evil.example.net"
EVIL_TOO = "https://evil-too.example.net"  # database mode's own, so its check proves something
ADMIN_ONLY = {"flask-login", "flask-wtf", "prometheus-client", "gunicorn", "flask-sqlalchemy",
              "flask-migrate", "alembic", "flask-cors", "email-validator", "cors-control-admin"}
DATABASE_EXTRA = {"sqlalchemy", "psycopg", "psycopg-binary"}

SAMPLE_API = '''
"""A team's own API: its package is called app, like the Flask tutorial's."""
import os

from flask import Flask, jsonify

from cors_control import CorsControl


def create_app():
    api = Flask(__name__)
    api.config["CORS_REFRESH_INTERVAL"] = 0.2
    api.config["REQUEST_LOG_FLUSH_INTERVAL"] = 0.3
    if os.environ.get("CONTROL_PLANE_URL"):
        control = CorsControl(api, control_plane=os.environ["CONTROL_PLANE_URL"],
                              token=os.environ["CONTROL_PLANE_TOKEN"],
                              cache_file=os.environ.get("CORS_POLICY_CACHE_FILE"))
    else:
        control = CorsControl(api, database_url=os.environ["POLICY_DATABASE_URL"])

    @api.get("/api/orders")
    def orders():
        return jsonify(orders=[])

    @api.get("/whoami")
    def whoami():
        import app
        return jsonify(package=app.__file__)

    @api.get("/cors-status")
    def cors_status():
        return jsonify(control.status())

    return api
'''


# -- the environment -----------------------------------------------------------------------------

def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _venv(path: Path) -> Path:
    _run(sys.executable, "-m", "venv", path)
    return path / "bin"


def _distributions(bin_dir: Path) -> set[str]:
    listed = json.loads(_run(bin_dir / "python", "-m", "pip", "list", "--format", "json"))
    return {item["name"].lower().replace("_", "-") for item in listed}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out,
         ROOT / "engine", ROOT, cwd=ROOT)
    names = sorted(p.name for p in out.glob("*.whl"))
    assert [n.split("-")[0] for n in names] == ["cors_control", "cors_control_admin"], names
    return out


@pytest.fixture(scope="module")
def admin_bin(wheels, tmp_path_factory) -> Path:
    bin_dir = _venv(tmp_path_factory.mktemp("admin-venv") / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--find-links", wheels,
         "cors-control-admin")
    return bin_dir


@pytest.fixture(scope="module")
def engine_bin(wheels, tmp_path_factory) -> Path:
    bin_dir = _venv(tmp_path_factory.mktemp("engine-venv") / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "--quiet", "--find-links", wheels,
         "cors-control")
    installed = _distributions(bin_dir)
    assert "cors-control" in installed
    assert not installed & (ADMIN_ONLY | DATABASE_EXTRA), installed & (ADMIN_ONLY | DATABASE_EXTRA)
    return bin_dir


@pytest.fixture(scope="module")
def admin_database(tmp_path_factory) -> Iterator[str]:
    """A database of the test's own: SQLite in a temporary directory, or, when the suite runs
    on PostgreSQL, a fresh database on the same server (dropped afterwards)."""
    base = os.environ.get("TEST_DATABASE_URL", "")
    if not base.startswith("postgresql"):
        yield f"sqlite:///{tmp_path_factory.mktemp('admin-db') / 'admin.db'}"
        return
    name = f"wheels_{uuid.uuid4().hex[:8]}"
    server = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield str(sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False))
    with server.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


class Admin:
    """The admin app installed from its wheel, run from a directory that is not the checkout."""

    def __init__(self, bin_dir: Path, database_url: str, home: Path) -> None:
        self.bin = bin_dir
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**_base_env(), "DATABASE_URL": database_url,
                    "INSTANCE_PATH": str(home / "instance"), "SECRET_KEY": "wheel-test-key",
                    "CORS_REFRESH_INTERVAL": "0.2", "CORS_CONTROL_ACTOR": "wheel-test"}
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str) -> str:
        return _run(self.bin / "cors-control-admin", *args, cwd=self.home, env=self.env)

    def start(self) -> None:
        self.process = subprocess.Popen(
            # Data planes' long polls are open requests: a graceful stop would wait for them.
            [str(self.bin / "gunicorn"), "--workers", "1", "--threads", "8",
             "--graceful-timeout", "1",
             "--bind", f"127.0.0.1:{self.port}", "app:create_app()"],
            cwd=self.home, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_until(lambda: _get(f"{self.url}/healthz")[0] in (200, 503), 30,
                    "the admin app did not start", self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def import_policy(self, *origins: str) -> None:
        document = {"rules": [{"path": "/api/*", "origins": list(origins),
                               "methods": ["GET", "POST"]}]}
        policy = self.home / "policy.json"
        policy.write_text(json.dumps(document))
        self.cli("cors", "import", str(policy))

    def logged_origins(self) -> set[str]:
        listed = json.loads(self.cli("cors", "log", "--json", "--since", "1h"))
        return {row["origin"] for row in listed["entries"]}


class SampleApi:
    """The team's API, in its own environment, with only the engine installed."""

    def __init__(self, bin_dir: Path, home: Path, env: dict[str, str]) -> None:
        self.bin = bin_dir
        self.home = home
        package = home / "app"
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(textwrap.dedent(SAMPLE_API))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**_base_env(), **env}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.bin / "flask"), "--app", "app:create_app", "run", "--port",
             str(self.port)], cwd=self.home, env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_until(lambda: _get(f"{self.url}/whoami")[0] == 200, 30,
                    "the sample API did not start", self.process)
        package = json.loads(_get(f"{self.url}/whoami")[1])["package"]
        assert package == str(self.home / "app" / "__init__.py")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def allowed(self, origin: str) -> str | None:
        status, _body, headers = _get(f"{self.url}/api/orders", origin=origin)
        assert status == 200
        return headers.get("Access-Control-Allow-Origin")

    def status(self) -> dict:
        return json.loads(_get(f"{self.url}/cors-status")[1])


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _get(url: str, *, origin: str | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Origin": origin} if origin else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)
    except OSError:
        return 0, "", {}


def _wait_until(condition, seconds: float, message: str,
                process: subprocess.Popen | None = None) -> float:
    """Poll *condition* every 20 ms; return how long it took."""
    start = time.monotonic()
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{message}: exited with {process.returncode}\n"
                                 f"{process.stderr.read().decode() if process.stderr else ''}")
        if time.monotonic() - start > seconds:
            raise AssertionError(message)
        time.sleep(0.02)
    return time.monotonic() - start


def _served_within(api: SampleApi, origin: str) -> float:
    return _wait_until(lambda: api.allowed(origin) == origin, 10,
                       f"{origin} was never served by the sample API")


@pytest.fixture
def admin(admin_bin, admin_database, tmp_path) -> Iterator[Admin]:
    home = tmp_path / "admin"
    home.mkdir()
    admin = Admin(admin_bin, admin_database, home)
    admin.cli("db", "upgrade")
    admin.import_policy(SHOP)
    admin.start()
    yield admin
    admin.stop()


# -- the tests ---------------------------------------------------------------------------------

def test_the_admin_wheel_carries_its_templates_static_files_and_migrations(admin):
    status, body, _headers = _get(f"{admin.url}/admin/login")
    assert status == 200 and "<form" in body
    status, body, _headers = _get(f"{admin.url}/static/vendor/htmx.min.js")
    assert status == 200 and "htmx" in body
    # The migrations ran from the wheel: the schema is at the newest revision.
    assert "(head)" in admin.cli("db", "current")


def test_control_plane_mode_from_the_engine_wheel(admin, engine_bin, tmp_path):
    token = admin.cli("tokens", "create", "sample-api", "--role", "data-plane").strip()
    cache_file = tmp_path / "policy-cache.json"
    api = SampleApi(engine_bin, tmp_path / "sample", {
        "CONTROL_PLANE_URL": admin.url, "CONTROL_PLANE_TOKEN": token,
        "CORS_POLICY_CACHE_FILE": str(cache_file)})
    api.start()
    try:
        _served_within(api, SHOP)
        assert api.allowed(EVIL) is None

        admin.import_policy(SHOP, NEW)
        assert _served_within(api, NEW) < 1.0

        _wait_until(lambda: EVIL in admin.logged_origins(), 30,
                    "the sample API's refusal never reached the admin app's request log")

        admin.stop()
        time.sleep(0.5)
        assert api.allowed(NEW) == NEW and api.allowed(EVIL) is None
        assert api.status()["stale"] is True
    finally:
        api.stop()

    assert cache_file.is_file()
    restarted = SampleApi(engine_bin, tmp_path / "sample", {
        "CONTROL_PLANE_URL": admin.url, "CONTROL_PLANE_TOKEN": token,
        "CORS_POLICY_CACHE_FILE": str(cache_file)})
    restarted.start()
    try:
        _served_within(restarted, NEW)
        assert restarted.status()["serving_from"] == "cache-file"
    finally:
        restarted.stop()

    cold = SampleApi(engine_bin, tmp_path / "cold", {
        "CONTROL_PLANE_URL": admin.url, "CONTROL_PLANE_TOKEN": token})
    cold.start()
    try:  # no policy yet and no cache: cross-origin calls to the API are refused
        assert cold.allowed(SHOP) is None
        status = cold.status()
        assert (status["version"], status["serving_from"]) == (None, "none"), status
    finally:
        cold.stop()


def test_database_mode_from_the_engine_wheel(admin, admin_database, wheels, engine_bin,
                                             tmp_path):
    _run(engine_bin / "python", "-m", "pip", "install", "--quiet", "--find-links", wheels,
         "cors-control[database]")
    installed = _distributions(engine_bin)
    assert "sqlalchemy" in installed and not installed & ADMIN_ONLY, installed & ADMIN_ONLY
    api = SampleApi(engine_bin, tmp_path / "sample", {"POLICY_DATABASE_URL": admin_database})
    api.start()
    try:
        _served_within(api, SHOP)
        assert api.allowed(EVIL_TOO) is None
        admin.import_policy(SHOP, NEW)
        assert _served_within(api, NEW) < 1.0
        _wait_until(lambda: EVIL_TOO in admin.logged_origins(), 30,
                    "the sample API's refusal never reached the request log")
    finally:
        api.stop()
