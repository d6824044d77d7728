"""hub/bench.py options: ``--setting`` keys become the hub's environment variables; bad ones are refused."""

from __future__ import annotations

import pytest

from hub.bench import main, parse_setting, setting_env
from hub.settings import Settings


def test_a_dotted_setting_becomes_the_variable_the_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dict(parse_setting(t) for t in ("kafka.producer_linger_ms=20", "delivery.target_concurrency=32", "event_loop=asyncio"))
    env = setting_env(settings)
    assert env == {"SWITCHBOARD_KAFKA__PRODUCER_LINGER_MS": "20", "SWITCHBOARD_DELIVERY__TARGET_CONCURRENCY": "32",
                   "SWITCHBOARD_EVENT_LOOP": "asyncio"}
    for key, value in env.items():  # what the hub's processes will read
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.kafka.producer_linger_ms == 20.0 and s.delivery.target_concurrency == 32


def test_a_value_may_hold_equals_signs() -> None:
    assert parse_setting("receiver.path=a=b") == ("receiver.path", "a=b")


@pytest.mark.parametrize("bad", ["kafka.producer_linger_ms", "=3", "kafka..x=1", "kafka.linger-ms=1", " =1"])
def test_malformed_settings_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="section.name=value"):
        parse_setting(bad)


def test_the_command_line_refuses_bad_options_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--setting", "no-equals-sign"])
    assert exc.value.code == 2
    assert "section.name=value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--latency-rates", "10,-5"])
    assert "positive" in capsys.readouterr().err


def test_a_negative_mixed_load_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--mixed", "-1"])
    assert exc.value.code == 2
    assert "--mixed" in capsys.readouterr().err
