"""``flask cors import --dry-run`` prints, route by route, what the import would take away."""

from __future__ import annotations

import json

from app.services.changes import policy_version
from app.services.policy_read import export_policy

BROAD = {"path": "/api/*", "origins": ["https://a.example.com", "https://b.example.com"]}


def _write(tmp_path, document, name: str = "policy.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def test_dry_run_names_the_routes_a_narrower_rule_takes_and_what_they_lose(runner, tmp_path,
                                                                          app):
    assert runner.invoke(args=["cors", "import", _write(tmp_path, {"rules": [BROAD]})]) \
        .exit_code == 0
    with app.app_context():
        version = policy_version()
    narrower = {"rules": [BROAD, {"path": "/api/orders", "supports_credentials": True,
                                  "origins": ["https://shop.example.com"]}]}
    result = runner.invoke(args=["cors", "import", "--dry-run",
                                 _write(tmp_path, narrower, "next.json")])
    assert result.exit_code == 0, result.output
    assert "/api/orders: /api/* -> /api/orders" in result.output
    assert "loses: origin https://a.example.com, origin https://b.example.com" in result.output
    assert "gains: origin https://shop.example.com" in result.output
    assert "credentials" in result.output
    with app.app_context():
        assert policy_version() == version
        assert [r["path"] for r in export_policy()["rules"]] == ["/api/*"]


def test_dry_run_of_an_import_that_changes_nothing_says_so(runner, tmp_path):
    path = _write(tmp_path, {"rules": [BROAD]})
    runner.invoke(args=["cors", "import", path])
    result = runner.invoke(args=["cors", "import", "--dry-run", path])
    assert "No route changes what it allows." in result.output
