import pytest

from connectors.errors import AuthError, FatalError, RateLimitedError, RetryableError
from hub.delivery.retry import RetryPolicy

P = RetryPolicy(inplace_attempts=3, max_inplace_wait_s=10, backoff_s=0.5, tier_delays_s=(5, 30, 120))
NOW = 1_000_000


@pytest.mark.parametrize("err", [FatalError("bad request"), AuthError("bad token")])
def test_not_retryable_is_dead_lettered_at_once(err):
    d = P.decide(err, inplace_attempt=1, round_=0, now_ms=NOW)
    assert d.kind == "dead"
    assert str(err) in d.reason


def test_transient_errors_back_off_exponentially_in_place():
    delays = [P.decide(RetryableError("503"), inplace_attempt=i, round_=0, now_ms=NOW).delay_s for i in (1, 2)]
    assert delays == [0.5, 1.0]


def test_retry_after_is_honoured_exactly_in_place():
    d = P.decide(RateLimitedError("429", retry_after=2.5), inplace_attempt=1, round_=0, now_ms=NOW)
    assert (d.kind, d.delay_s) == ("wait", 2.5)


def test_long_retry_after_moves_the_work_to_a_tier_that_covers_it():
    d = P.decide(RateLimitedError("429", retry_after=60), inplace_attempt=1, round_=0, now_ms=NOW)
    assert d.kind == "park"
    assert d.tier == 2  # 5 s and 30 s are shorter than 60 s
    assert d.not_before_ms == NOW + 120_000


def test_retry_after_longer_than_every_tier_still_waits_for_it():
    d = P.decide(RateLimitedError("429", retry_after=500), inplace_attempt=3, round_=0, now_ms=NOW)
    assert (d.kind, d.tier, d.not_before_ms) == ("park", 2, NOW + 500_000)


def test_in_place_attempts_used_up_parks_on_the_tier_of_the_round():
    d = P.decide(RetryableError("timeout"), inplace_attempt=3, round_=1, now_ms=NOW)
    assert (d.kind, d.tier, d.not_before_ms) == ("park", 1, NOW + 30_000)


def test_after_the_last_tier_the_action_is_dead_lettered():
    d = P.decide(RetryableError("timeout"), inplace_attempt=3, round_=3, now_ms=NOW)
    assert d.kind == "dead"
    assert "3 retry rounds" in d.reason
