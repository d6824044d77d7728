"""Settings reload without a restart (hub/reload.py): what changed, what is hot, what is refused."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import yaml

from connectors.pagerduty.actions import PagerDutyConverger
from connectors.slack.actions import SlackConverger
from hub.cli import check_config
from hub.delivery.retry import RetryPolicy
from hub.reload import (HOT_SETTINGS, RoutingWatcher, SettingsWatcher, changed_keys, flatten, split_changes, with_values,
                        worker_appliers, worker_settings_watcher)
from hub.settings import DEFAULT_ROUTING_FILE, Settings, load_settings

PD_KEY = "canarypdroutingkeyreload00000042"  # 32 characters
SLACK_TOKEN = "xoxb-canary-reload-token"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("SWITCHBOARD_") or k == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(k)


@pytest.fixture(autouse=True)
def keep_log_level():
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


def write(path, **sections):
    path.write_text(yaml.safe_dump(sections))


def base(**extra):
    """A file check-config accepts with the example routing file (which pages ops and posts to Slack)."""
    return {"pagerduty": {"dry_run": True, "services": {"ops": PD_KEY}}, "slack": {"dry_run": True}, **extra}


def messages(caplog, event):
    return [r for r in caplog.records if r.getMessage() == event]


def test_every_hot_key_is_a_setting():
    assert set(HOT_SETTINGS) <= set(flatten(Settings()))


def test_changed_keys_are_dotted_leaves_with_map_entries_and_compare_secrets_by_value():
    old = Settings(pagerduty={"services": {"ops": PD_KEY}}, slack={"bot_token": SLACK_TOKEN})
    same = Settings(pagerduty={"services": {"ops": PD_KEY}}, slack={"bot_token": SLACK_TOKEN})
    assert changed_keys(old, same) == []
    new = Settings(pagerduty={"services": {"ops": PD_KEY, "billing": "b" * 32}, "dry_run": True},
                   slack={"bot_token": "xoxb-another"}, delivery={"backoff_s": 2.0})
    assert changed_keys(old, new) == ["delivery.backoff_s", "pagerduty.dry_run", "pagerduty.services.billing", "slack.bot_token"]
    assert split_changes(changed_keys(old, new)) == (["delivery.backoff_s", "pagerduty.dry_run"],
                                                    ["pagerduty.services.billing", "slack.bot_token"])


def test_with_values_replaces_only_the_named_keys():
    running = Settings(pagerduty={"dry_run": True}, delivery={"backoff_s": 0.5, "request_timeout_s": 10})
    new = Settings(pagerduty={"dry_run": False}, delivery={"backoff_s": 2.0, "request_timeout_s": 3})
    out = with_values(running, new, ["pagerduty.dry_run", "delivery.backoff_s"])
    assert (out.pagerduty.dry_run, out.delivery.backoff_s, out.delivery.request_timeout_s) == (False, 2.0, 10)
    assert running.pagerduty.dry_run is True  # a copy


def watcher_for(path, applied_log):
    appliers = {key: (lambda s, key=key: applied_log.append(key)) for key in HOT_SETTINGS}
    return SettingsWatcher(path, load_settings(path), appliers=appliers, validate=check_config)


def test_hot_keys_are_applied_and_the_others_named_once_without_their_values(tmp_path, caplog):
    path = tmp_path / "switchboard.yaml"
    write(path, **base())
    calls: list[str] = []
    w = watcher_for(path, calls)
    assert w.check() == [] and calls == []  # unchanged
    caplog.set_level(logging.INFO, logger="switchboard.settings")
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}, delivery={"backoff_s": 2.0, "request_timeout_s": 3},
                       slack={"dry_run": True, "bot_token": SLACK_TOKEN}, log_level="DEBUG"))
    assert w.check() == ["delivery.backoff_s", "log_level", "pagerduty.dry_run"]
    assert sorted(calls) == ["delivery.backoff_s", "log_level", "pagerduty.dry_run"]
    assert (w.running.pagerduty.dry_run, w.running.delivery.backoff_s, w.running.log_level) == (False, 2.0, "DEBUG")
    # restart-needed keys keep their start-up values in the running settings
    assert w.running.slack.bot_token is None and w.running.delivery.request_timeout_s == 10.0
    [applied] = messages(caplog, "settings.reload.applied")
    assert applied.keys == ["delivery.backoff_s", "log_level", "pagerduty.dry_run"]
    [restart] = messages(caplog, "settings.reload.restart-needed")
    assert restart.keys == ["delivery.request_timeout_s", "slack.bot_token"]
    assert SLACK_TOKEN not in caplog.text and PD_KEY not in caplog.text
    # the same pending change is not named again; a new one is
    caplog.clear()
    path.write_text(path.read_text() + "# a comment\n")
    assert w.check() == [] and not messages(caplog, "settings.reload.restart-needed")
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}, delivery={"backoff_s": 2.0, "request_timeout_s": 3},
                       slack={"dry_run": True, "bot_token": SLACK_TOKEN}, log_level="DEBUG", kafka={"partitions": 8}))
    assert w.check() == []
    assert [r.keys for r in messages(caplog, "settings.reload.restart-needed")] == [["kafka.partitions"]]


@pytest.mark.parametrize("content, key", [
    ({"delivery": {"backoff_s": -1}}, "delivery.backoff_s"),
    ({"pagerduty": {"dry_runn": True}}, "pagerduty.dry_runn"),
    ({"pagerduty": {"dry_run": "sometimes"}}, "pagerduty.dry_run"),
    ({"log_level": "LOUD"}, "log_level"),
    # valid on its own, but the routing file pages ops and no routing key would be left: check-config's rule
    ({"pagerduty": {"dry_run": False}, "slack": {"dry_run": True}}, "pagerduty.services.ops"),
])
def test_an_invalid_file_is_refused_naming_the_key_and_the_running_settings_stay(tmp_path, caplog, content, key):
    path = tmp_path / "switchboard.yaml"
    path.write_text("pagerduty:\n  dry_run: true\nslack:\n  dry_run: true\n")
    calls: list[str] = []
    w = watcher_for(path, calls)
    running = w.running
    caplog.set_level(logging.INFO, logger="switchboard.settings")
    write(path, **content)
    assert w.check() == [] and calls == [] and w.running is running
    [refused] = messages(caplog, "settings.reload.refused")
    assert refused.reason.startswith(key + ":") or f"; {key}:" in refused.reason, refused.reason
    assert "sometimes" not in refused.reason and "LOUD" not in refused.reason or key == "log_level"
    assert w.check() == [] and len(messages(caplog, "settings.reload.refused")) == 1  # not retried until it changes


@pytest.mark.parametrize("text", ["pagerduty: [dry_run, xoxb-canary-in-yaml\n", "just xoxb-canary-in-yaml\n"])
def test_a_file_that_is_not_a_yaml_mapping_is_refused_without_quoting_it(tmp_path, caplog, text):
    path = tmp_path / "switchboard.yaml"
    write(path, **base())
    w = watcher_for(path, [])
    caplog.set_level(logging.INFO, logger="switchboard.settings")
    path.write_text(text)
    assert w.check() == [] and w.running.pagerduty.dry_run is True
    [refused] = messages(caplog, "settings.reload.refused")
    assert refused.reason.startswith(f"SWITCHBOARD_CONFIG {path}") and "canary" not in caplog.text
    assert "invalid YAML" in refused.reason or "must be a mapping" in refused.reason, refused.reason


def test_environment_variables_still_win_over_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_PAGERDUTY__DRY_RUN", "true")
    path = tmp_path / "switchboard.yaml"
    write(path, **base())
    calls: list[str] = []
    w = watcher_for(path, calls)
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}))
    assert w.check() == [] and calls == [] and w.running.pagerduty.dry_run is True


class FakeClient:
    pass


def fake_hub(settings, *, slack_client=None, pd_events=None):
    policy = RetryPolicy(inplace_attempts=3, max_inplace_wait_s=10.0, backoff_s=0.5, tier_delays_s=(1.0, 2.0))
    pipelines = {
        "slack": SimpleNamespace(converger=SlackConverger(slack_client, dry_run=settings.slack.dry_run), policy=policy),
        "pagerduty": SimpleNamespace(converger=PagerDutyConverger(pd_events, dry_run=settings.pagerduty.dry_run), policy=policy),
    }
    return SimpleNamespace(settings=settings, pipelines=pipelines, routing=None)


def test_the_worker_applies_dry_run_retry_policy_log_level_and_routing_file(tmp_path, caplog):
    path, routing = tmp_path / "switchboard.yaml", tmp_path / "routing.yaml"
    routing.write_text(DEFAULT_ROUTING_FILE.read_text().replace("restricted_projects: [LEGAL, HR]", "restricted_projects: [LEGAL, HR, OPS]"))
    write(path, **base(slack={"dry_run": True}))
    hub = fake_hub(load_settings(path), slack_client=None, pd_events=FakeClient())
    rw = RoutingWatcher(hub.settings.routing_file, lambda cfg: setattr(hub, "routing", cfg), settings=hub.settings)
    w = worker_settings_watcher(hub, rw, path, validate=check_config)
    caplog.set_level(logging.INFO, logger="switchboard.settings")
    # Slack had no token at start: going live with a token added in the same edit needs a restart, and is refused
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}, slack={"dry_run": False, "bot_token": SLACK_TOKEN}))
    assert w.check() == [] and hub.pipelines["pagerduty"].converger.dry_run is True
    [refused] = messages(caplog, "settings.reload.refused")
    assert refused.reason.startswith("slack.bot_token:") and "keeps slack.bot_token from its start: restart" in refused.reason
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}, slack={"dry_run": True, "bot_token": SLACK_TOKEN},
                       delivery={"inplace_attempts": 5, "backoff_s": 0.1}, log_level="WARNING", routing_file=str(routing)))
    applied = w.check()
    assert applied == ["delivery.backoff_s", "delivery.inplace_attempts", "log_level", "pagerduty.dry_run", "routing_file"]
    assert hub.pipelines["pagerduty"].converger.dry_run is False and hub.pipelines["slack"].converger.dry_run is True
    assert [r.keys for r in messages(caplog, "settings.reload.restart-needed")] == [["slack.bot_token"]]
    for p in hub.pipelines.values():
        assert p.policy == RetryPolicy(inplace_attempts=5, max_inplace_wait_s=10.0, backoff_s=0.1, tier_delays_s=(1.0, 2.0))
    assert logging.getLogger().level == logging.WARNING
    assert rw.path == routing and "OPS" in hub.routing.restricted_projects
    # the running settings are published: hub.settings and the routing watcher's (its key check follows dry run)
    assert hub.settings is w.running and rw.settings is w.running
    assert hub.settings.slack.dry_run is True and hub.settings.pagerduty.dry_run is False and hub.settings.slack.bot_token is None
    assert SLACK_TOKEN not in caplog.text and PD_KEY not in caplog.text


def test_dry_run_stays_on_without_a_client_can_be_switched_back_on_and_a_refused_routing_file_keeps_the_old_one(tmp_path):
    path = tmp_path / "switchboard.yaml"
    write(path, **base(pagerduty={"dry_run": False, "services": {"ops": PD_KEY}}))
    hub = fake_hub(load_settings(path), slack_client=None, pd_events=FakeClient())
    rw = RoutingWatcher(hub.settings.routing_file, lambda cfg: setattr(hub, "routing", cfg), settings=hub.settings)
    appliers = worker_appliers(hub, rw)
    live_slack = with_values(hub.settings, Settings(slack={"dry_run": False}), ["slack.dry_run"])
    assert "restart" in appliers["slack.dry_run"](live_slack) and hub.pipelines["slack"].converger.dry_run is True
    s = with_values(hub.settings, Settings(pagerduty={"dry_run": True}, routing_file=tmp_path / "missing.yaml"),
                    ["pagerduty.dry_run", "routing_file"])
    assert appliers["pagerduty.dry_run"](s) is None and hub.pipelines["pagerduty"].converger.dry_run is True
    assert appliers["routing_file"](s) is not None and rw.path == DEFAULT_ROUTING_FILE


def test_no_settings_file_no_settings_watcher():
    hub = fake_hub(Settings())
    assert worker_settings_watcher(hub, None, None) is None


def test_check_config_names_a_bad_log_level():
    assert any(p.startswith("log_level:") for p in check_config(Settings(log_level="LOUD", pagerduty={"dry_run": True})))
