"""The retry policy: what to do after a failed delivery attempt, decided from the error type alone.

Promise (pure, no clock inside: ``now_ms`` is passed in):

- a non-retryable error (auth, fatal) is dead-lettered at once, with its message as the reason;
- a retryable error is retried *in place* (the partition waits) at most ``inplace_attempts`` times
  in all, honouring the vendor's ``Retry-After`` exactly and otherwise backing off exponentially;
- a ``Retry-After`` longer than ``max_inplace_wait_s``, or in-place attempts used up, *moves the
  work*: the action is parked on the first retry tier (a FIFO topic with a fixed delay) whose delay
  covers the wait, and on the next tier at each further round;
- after the last tier the action is dead-lettered, and ``switchboard replay`` can put it back.

The caller never inspects status codes; vendors raise :mod:`connectors.errors` types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.errors import ConnectorError, RateLimitedError


@dataclass(frozen=True)
class Decision:
    kind: Literal["wait", "park", "dead"]
    #: for ``wait``: seconds to sleep before the next in-place attempt
    delay_s: float = 0.0
    #: for ``park``: index of the retry tier, and the time before which no attempt may be made
    tier: int = 0
    not_before_ms: int = 0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    inplace_attempts: int = 3
    max_inplace_wait_s: float = 10.0
    backoff_s: float = 0.5
    #: delays of the retry tiers, shortest first (from topics.yaml)
    tier_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)

    def decide(self, error: ConnectorError, *, inplace_attempt: int, round_: int, now_ms: int) -> Decision:
        """Decide after attempt number ``inplace_attempt`` (1-based) of retry round ``round_`` (0-based)."""
        reason = f"{error.code}: {error}"
        if not error.retryable:
            return Decision("dead", reason=reason)
        retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
        if inplace_attempt < self.inplace_attempts:
            if retry_after is not None:
                if retry_after <= self.max_inplace_wait_s:
                    return Decision("wait", delay_s=float(retry_after), reason=reason)
            else:
                return Decision("wait", delay_s=self.backoff_s * (2 ** (inplace_attempt - 1)), reason=reason)
        if round_ >= len(self.tier_delays_s):
            return Decision("dead", reason=f"gave up after {round_} retry rounds; last error {reason}")
        # the first tier at or after this round whose delay covers Retry-After
        tier = round_
        if retry_after is not None:
            while tier < len(self.tier_delays_s) - 1 and self.tier_delays_s[tier] < retry_after:
                tier += 1
        wait_s = max(self.tier_delays_s[tier], retry_after or 0.0)
        return Decision("park", tier=tier, not_before_ms=now_ms + int(wait_s * 1000), reason=reason)
