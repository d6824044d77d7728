import pytest

from hub.cli import check_config
from hub.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("SWITCHBOARD_") or k == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(k)


def test_bad_key_is_named_with_its_environment_variable(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_KAFKA__PARTITIONS", "0")
    with pytest.raises(ConfigError, match=r"kafka\.partitions: .*SWITCHBOARD_KAFKA__PARTITIONS"):
        load_settings()


def test_secret_values_never_appear_in_errors(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_PAGERDUTY__SERVICES__OPS", "short-canary-key")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "short-canary-key" not in str(err.value)
    assert "pagerduty.services" in str(err.value)


def test_secrets_print_masked(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_SLACK__BOT_TOKEN", "xoxb-canary-123")
    s = load_settings()
    assert "xoxb-canary-123" not in repr(s) and "xoxb-canary-123" not in str(s.model_dump())


def test_kafka_bootstrap_servers_shortcut(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    assert load_settings().kafka.bootstrap_servers == "k1:9092,k2:9092"


def test_yaml_file_is_read_and_env_wins(monkeypatch, tmp_path):
    f = tmp_path / "sb.yaml"
    f.write_text("app_id: fromfile\nkafka:\n  partitions: 8\n")
    monkeypatch.setenv("SWITCHBOARD_KAFKA__PARTITIONS", "6")
    s = load_settings(f)
    assert (s.app_id, s.kafka.partitions) == ("fromfile", 6)


def test_typo_in_the_yaml_file_is_refused(tmp_path):
    f = tmp_path / "sb.yaml"
    f.write_text("kafka:\n  partitons: 8\n")
    with pytest.raises(ConfigError, match="partitons"):
        load_settings(f)


def test_check_config_names_a_paged_service_without_a_routing_key():
    problems = check_config(load_settings())
    assert any(p.startswith("pagerduty.services.ops:") for p in problems)
    assert any(p.startswith("slack.bot_token:") for p in problems)


def test_check_config_passes_when_everything_is_set(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_PAGERDUTY__SERVICES__OPS", "a" * 32)
    monkeypatch.setenv("SWITCHBOARD_SLACK__BOT_TOKEN", "xoxb-1")
    assert check_config(load_settings()) == []


def test_worker_takes_producer_linger_buffers_and_per_target_concurrency_from_settings(monkeypatch, tmp_path):
    from hub.app import build_app

    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SWITCHBOARD_KAFKA__PRODUCER_LINGER_MS", "7")
    monkeypatch.setenv("SWITCHBOARD_DELIVERY__TARGET_CONCURRENCY", "3")
    monkeypatch.setenv("SWITCHBOARD_KAFKA__STREAM_BUFFER_RECORDS", "256")
    monkeypatch.setenv("SWITCHBOARD_KAFKA__CONSUMER_FETCH_KB", "256")
    monkeypatch.setenv("SWITCHBOARD_SLACK__BOT_TOKEN", "xoxb-unit")
    hub = build_app(load_settings())
    assert hub.app.conf.producer_linger == 0.007
    assert hub.app.conf.stream_buffer_maxsize == 256
    assert hub.app.conf.consumer_max_fetch_size == 256 * 1024
    for vendor in ("slack", "pagerduty"):
        assert hub.pipelines[vendor].converger._gate.concurrency == 3


@pytest.mark.parametrize("text, expected", [
    ("kafka: [unclosed\n", r"bad\.yaml:2:1: invalid YAML: expected ',' or '\]'"),
    ("slack:\n  bot_token: \"xoxb-canary-never-shown\n", r"bad\.yaml:3:1: invalid YAML: found unexpected end of stream"),
    ("- kafka\n- slack\n", r"bad\.yaml: the top level must be a mapping of settings .* not a list"),
])
def test_a_malformed_settings_file_is_a_config_error_with_its_place_not_a_traceback(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as err:
        load_settings(path)
    assert "canary" not in str(err.value)
