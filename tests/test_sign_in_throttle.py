"""Sign-in throttling: counted before the password is checked, so parallel attempts cannot race
it; a growing delay per account instead of a lock; a hard limit per client address, taken
through the trusted proxies."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from app.extensions import db
from app.models import SignInThrottle
from app.services.auth import (
    ACCOUNT_FREE_ATTEMPTS,
    ACCOUNT_MAX_DELAY,
    ADDRESS_LIMIT,
    _delay,
    account_key,
)
from tests.conftest import _CSRF_META, PASSWORD, csrf_token_of

VICTIM = "ops@example.com"
OTHER = "dev@example.com"
WRONG = "not-the-password"
NOT_RIGHT = "The email or password is not right"
ACCOUNT_WAIT = "Too many failed sign-ins for this account. Try again in"
ADDRESS_WAIT = "Too many failed sign-ins from your network"


@pytest.fixture
def proxied_app(make_app):
    """The app behind one trusted reverse proxy, with two accounts."""
    from app.services.users import create_user

    app = make_app(TRUSTED_PROXIES=1)
    with app.app_context():
        create_user(VICTIM, PASSWORD, role="admin")
        create_user(OTHER, PASSWORD, role="viewer")
    return app


def _login(client, email: str, password: str, address: str | None = None):
    headers = {"X-Forwarded-For": address} if address else {}
    return client.post("/admin/login", headers=headers, data={
        "email": email, "password": password, "csrf_token": csrf_token_of(client)})


def _counter(app, key: str) -> SignInThrottle | None:
    with app.app_context():
        row = db.session.get(SignInThrottle, key)
        if row is not None:
            db.session.expunge(row)
        return row


def _let_time_pass(app, email: str, by: timedelta) -> None:
    """As if the account's last check happened *by* earlier (no test sleeps that long)."""
    with app.app_context():
        db.session.execute(sa.update(SignInThrottle)
                           .where(SignInThrottle.key == account_key(email))
                           .values(last_check=datetime.now(UTC) - by))
        db.session.commit()


def test_delays_grow_from_two_seconds_and_stop_at_the_cap():
    free = ACCOUNT_FREE_ATTEMPTS
    assert [_delay(free + n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert _delay(free + 6) == _delay(free + 1000) == ACCOUNT_MAX_DELAY


def test_after_five_failures_the_right_password_waits_and_then_gets_in(proxied_app):
    client = proxied_app.test_client()
    answers = [_login(client, VICTIM, WRONG, f"10.0.0.{n}") for n in range(12)]
    assert [a.status_code for a in answers[:ACCOUNT_FREE_ATTEMPTS]] == [401] * 5
    refused = _login(client, VICTIM, PASSWORD, "10.0.1.1")
    assert refused.status_code == 429
    assert ACCOUNT_WAIT in refused.get_data(as_text=True)
    assert 1 <= int(refused.headers["Retry-After"]) <= ACCOUNT_MAX_DELAY.total_seconds()
    _let_time_pass(proxied_app, VICTIM, ACCOUNT_MAX_DELAY + timedelta(seconds=1))
    assert _login(client, VICTIM, PASSWORD, "10.0.1.1").status_code == 302
    assert _counter(proxied_app, account_key(VICTIM)) is None


def test_a_delayed_attempt_is_checked_once_its_wait_has_passed(proxied_app):
    client = proxied_app.test_client()
    for n in range(ACCOUNT_FREE_ATTEMPTS):
        _login(client, VICTIM, WRONG, f"10.0.0.{n}")
    _let_time_pass(proxied_app, VICTIM, timedelta(seconds=3))
    checked = _login(client, VICTIM, WRONG, "10.0.0.99")
    assert checked.status_code == 401 and NOT_RIGHT in checked.get_data(as_text=True)
    too_soon = _login(client, VICTIM, PASSWORD, "10.0.0.99")
    assert too_soon.status_code == 429


def test_a_success_clears_the_accounts_count_and_gives_the_address_its_attempt_back(
        proxied_app):
    client = proxied_app.test_client()
    for _ in range(3):
        _login(client, VICTIM, WRONG, "10.0.0.1")
    assert _counter(proxied_app, account_key(VICTIM)).attempts == 3
    assert _login(client, VICTIM, PASSWORD, "10.0.0.1").status_code == 302
    assert _counter(proxied_app, account_key(VICTIM)) is None
    assert _counter(proxied_app, "address:10.0.0.1").attempts == 3


def test_an_address_over_its_limit_is_refused_and_another_address_is_not(proxied_app):
    client = proxied_app.test_client()
    for index in range(ADDRESS_LIMIT):
        _login(client, f"guess{index}@example.com", WRONG, "203.0.113.7")
    refused = _login(client, VICTIM, PASSWORD, "203.0.113.7")
    assert refused.status_code == 429
    assert ADDRESS_WAIT in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) <= 15 * 60
    assert _login(proxied_app.test_client(), VICTIM, PASSWORD, "198.51.100.2").status_code == 302


def test_without_trusted_proxies_a_forwarded_address_is_ignored(app):
    """Spoofed X-Forwarded-For headers do not spread one client over many addresses."""
    from app.services.users import create_user

    with app.app_context():
        create_user(VICTIM, PASSWORD, role="admin")
    client = app.test_client()
    for index in range(ADDRESS_LIMIT):
        _login(client, f"guess{index}@example.com", WRONG, f"10.0.0.{index}")
    refused = _login(client, VICTIM, PASSWORD, "10.9.9.9")
    assert ADDRESS_WAIT in refused.get_data(as_text=True)


def test_unknown_accounts_are_delayed_like_known_ones(proxied_app):
    client = proxied_app.test_client()
    answers = [_login(client, "nobody@example.com", WRONG, f"10.0.0.{n}").status_code
               for n in range(12)]
    assert answers[:ACCOUNT_FREE_ATTEMPTS] == [401] * 5
    assert answers[-1] == 429


# -- parallel attempts over real HTTP ----------------------------------------------------------


@dataclass
class LiveApp:
    host: str
    port: int


@pytest.fixture
def live_app(proxied_app) -> Iterator[LiveApp]:
    """The app served over HTTP by a threaded Werkzeug server in this process."""
    server = make_server("127.0.0.1", 0, proxied_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveApp("127.0.0.1", server.server_port)
    server.shutdown()
    thread.join(timeout=10)


def _request(live: LiveApp, method: str, path: str, *, headers: dict[str, str],
             body: str | None = None) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection(live.host, live.port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


def _http_sign_in(live: LiveApp, email: str, password: str, address: str,
                  start: threading.Barrier | None = None) -> tuple[int, str]:
    """A browser's sign-in: fetch the form (cookie and CSRF token), then post it."""
    forwarded = {"X-Forwarded-For": address}
    _, headers, page = _request(live, "GET", "/admin/login", headers=forwarded)
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    token = _CSRF_META.search(page).group(1)
    if start is not None:
        start.wait(timeout=120)
    status, _, body = _request(live, "POST", "/admin/login", headers={
        **forwarded, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
        body=urlencode({"email": email, "password": password, "csrf_token": token}))
    return status, body


def _in_parallel(live: LiveApp, addresses: list[str], email: str) -> list[tuple[int, str]]:
    start = threading.Barrier(len(addresses))
    answers: list[tuple[int, str]] = [(0, "")] * len(addresses)

    def attempt(index: int) -> None:
        try:
            answers[index] = _http_sign_in(live, email, WRONG, addresses[index], start)
        except Exception as error:  # reported by the assertion below
            answers[index] = (-1, repr(error))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(addresses))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return answers


def _password_checks(caplog) -> int:
    return sum(1 for r in caplog.records if r.getMessage().startswith("sign-in failed"))


@pytest.mark.slow
def test_forty_parallel_wrong_passwords_check_at_most_five_and_never_fail(
        proxied_app, live_app, caplog):
    caplog.set_level(logging.INFO, logger="app.auth")
    answers = _in_parallel(live_app, [f"10.1.0.{n}" for n in range(40)], VICTIM)
    statuses = sorted(status for status, _ in answers)
    assert set(statuses) <= {401, 429}, answers
    checked = [body for status, body in answers if status == 401]
    assert len(checked) == ACCOUNT_FREE_ATTEMPTS
    assert all(NOT_RIGHT in body for body in checked)
    assert all(ACCOUNT_WAIT in body for status, body in answers if status == 429)
    assert _password_checks(caplog) == ACCOUNT_FREE_ATTEMPTS
    assert _counter(proxied_app, account_key(VICTIM)).attempts == 40

    status, body = _http_sign_in(live_app, VICTIM, PASSWORD, "10.2.0.1")
    assert status == 429 and ACCOUNT_WAIT in body
    _let_time_pass(proxied_app, VICTIM, ACCOUNT_MAX_DELAY + timedelta(seconds=1))
    assert _http_sign_in(live_app, VICTIM, PASSWORD, "10.2.0.1")[0] == 302


@pytest.mark.slow
def test_forty_parallel_failures_from_one_address_do_not_lock_out_another(
        proxied_app, live_app, caplog):
    caplog.set_level(logging.INFO, logger="app.auth")
    answers = _in_parallel(live_app, ["192.0.2.66"] * 40, VICTIM)
    assert {status for status, _ in answers} <= {401, 429}, answers
    network_refusals = [body for _, body in answers if ADDRESS_WAIT in body]
    assert len(network_refusals) == 40 - ADDRESS_LIMIT
    assert _password_checks(caplog) == ACCOUNT_FREE_ATTEMPTS

    assert _http_sign_in(live_app, OTHER, PASSWORD, "192.0.2.67")[0] == 302
    status, body = _http_sign_in(live_app, OTHER, PASSWORD, "192.0.2.66")
    assert status == 429 and ADDRESS_WAIT in body
    _let_time_pass(proxied_app, VICTIM, ACCOUNT_MAX_DELAY + timedelta(seconds=1))
    assert _http_sign_in(live_app, VICTIM, PASSWORD, "192.0.2.68")[0] == 302
