"""``flask sign-in-hint``: the line ``make run`` ends its start-up output with."""

from __future__ import annotations

import socket

from app.services.users import create_user

PASSWORD = "a-long-test-password"


def test_it_names_the_sign_in_url_and_the_first_active_admin(app, runner):
    with app.app_context():
        create_user("viewer@example.com", PASSWORD, role="viewer")
        create_user("root@example.com", PASSWORD, role="admin")
    done = runner.invoke(args=["sign-in-hint", "http://127.0.0.1:5000/"])
    assert done.exit_code == 0, done.output
    assert done.output == "Sign in at http://127.0.0.1:5000/admin/login as root@example.com\n"


def test_without_an_admin_it_says_how_to_create_one(runner):
    done = runner.invoke(args=["sign-in-hint", "http://127.0.0.1:5000"])
    assert "flask users create EMAIL --role admin" in done.output


def test_it_waits_for_a_listening_server_and_says_when_none_came(app, runner):
    with app.app_context():
        create_user("root@example.com", PASSWORD, role="admin")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        done = runner.invoke(args=["sign-in-hint", "--wait", "5", f"http://127.0.0.1:{port}"])
        assert done.exit_code == 0, done.output
        assert f"Sign in at http://127.0.0.1:{port}/admin/login as root@example.com" in done.output
    done = runner.invoke(args=["sign-in-hint", "--wait", "0.5", f"http://127.0.0.1:{port}"])
    assert done.exit_code == 1
    assert f"No server is listening at http://127.0.0.1:{port} after 0.5 s" in done.output


def test_a_url_that_is_not_one_is_a_usage_error(runner):
    done = runner.invoke(args=["sign-in-hint", "localhost:5000"])
    assert done.exit_code == 2 and "URL must look like http://127.0.0.1:5000" in done.output
