"""Routing reload without a restart, and `switchboard routes test FILE EVENT.json`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from hub.reload import RoutingWatcher
from hub.routing import event_labels, load_routing, route
from hub.settings import DEFAULT_ROUTING_FILE, Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jira"


def test_watcher_applies_a_valid_change_and_keeps_the_old_routing_on_a_bad_one(tmp_path, caplog):
    path = tmp_path / "routing.yaml"
    original = DEFAULT_ROUTING_FILE.read_text()
    path.write_text(original)
    applied = []
    settings = Settings(pagerduty={"dry_run": True})
    w = RoutingWatcher(path, applied.append, settings=settings)
    assert not w.check()  # unchanged
    path.write_text(original.replace("restricted_projects: [LEGAL, HR]", "restricted_projects: [LEGAL, HR, OPS]"))
    assert w.check() and "OPS" in applied[-1].restricted_projects
    labels = event_labels({"kind": "issue_created", "source": "jira", "issue": {"project_key": "OPS", "issue_type": "Incident", "priority": "Highest"}})
    assert route(applied[-1], labels).restricted  # the new file is the one routing now
    with caplog.at_level(logging.ERROR, logger="switchboard.routing"):
        path.write_text("route: [not, a, tree")
        assert not w.check() and len(applied) == 1
    assert "routing.reload-refused" in caplog.text
    assert not w.check()  # the refused version is not retried until the file changes again


def test_watcher_refuses_a_file_paging_a_service_without_a_key(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text(DEFAULT_ROUTING_FILE.read_text())
    applied = []
    w = RoutingWatcher(path, applied.append, settings=Settings(pagerduty={"services": {"ops": "k" * 32}}))
    path.write_text(DEFAULT_ROUTING_FILE.read_text().replace("pagerduty: [{service: ops}]", "pagerduty: [{service: ops}, {service: billing}]", 1))
    assert "billing" in load_routing(path).pagerduty_services
    assert not w.check() and applied == []


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60)


def test_routes_test_explains_the_path_of_a_webhook_body():
    out = run_cli("routes", "test", str(DEFAULT_ROUTING_FILE), str(FIXTURES / "issue_created__incident.json"))
    assert out.returncode == 0, out.stderr
    assert "incident: yes — incidents[0] matches" in out.stdout
    assert "root/3/0 → ops-page" in out.stdout and "receiver ops-page: slack ['#incidents'], pagerduty ['ops']" in out.stdout
    assert "root/2 → legal: project=\"LEGAL\" ✗  — not taken" in out.stdout


def test_routes_test_shows_the_fail_closed_drop(tmp_path):
    out = run_cli("routes", "test", str(DEFAULT_ROUTING_FILE), str(FIXTURES / "issue_created__restricted_security_level.json"))
    assert out.returncode == 0, out.stderr
    assert "restricted: yes (security-level)" in out.stdout and "dropped: #incidents" in out.stdout


def test_routes_test_takes_a_tracker_event_and_names_bad_input(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"schema": "switchboard.tracker_event/1", "event_id": "e", "kind": "issue_updated", "source": "jira",
                                 "issue": {"id": "1", "project_key": "OPS", "issue_type": "Task", "priority": "Low"}}))
    out = run_cli("routes", "test", str(DEFAULT_ROUTING_FILE), str(event))
    assert out.returncode == 0 and "incident: no" in out.stdout
    event.write_text("{nope")
    bad = run_cli("routes", "test", str(DEFAULT_ROUTING_FILE), str(event))
    assert bad.returncode == 2 and "not JSON" in bad.stderr
