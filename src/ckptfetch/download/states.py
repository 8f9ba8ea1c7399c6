"""What one download attempt can end with, and what the engine does next: a table, not exceptions.

An attempt (one request and its body, or a segmented run, or a check of a
partial that is already complete) ends with an `Outcome`. `decide` turns the
outcome and the job's counters into the next `Action`; the engine carries the
action out. Real errors (a 404, a full disk, a cancel) stay exceptions.

| outcome | action | counters |
|---|---|---|
| COMPLETE | COMMIT | - |
| CONTINUE, NO_RANGES | NOW | - |
| STALE | RESTART, or GIVE_UP after `retries + 2` restarts | restarts + 1 |
| MISMATCH | RESTART once if the bytes were partly from an earlier run, else GIVE_UP | restarts + 1 |
| LOST | BACKOFF, or GIVE_UP after `retries` failures in a row without progress | failures + 1, or 0 on progress |
| SLOW | as LOST, but a trickle is never progress | failures + 1 |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from ..errors import DownloadError


class Outcome(Enum):
    COMPLETE = "complete"  # every byte arrived and was hashed
    LOST = "lost"  # transient: a connection lost or refused, a retryable status, a body cut short
    SLOW = "slow"  # the connection ran under the minimum speed and was dropped: a failure, whatever arrived
    STALE = "stale"  # the partial cannot be continued (another version, a bad range): start from byte 0
    CONTINUE = "continue"  # go on at once with the partial (an interstitial page named the next URL)
    NO_RANGES = "no-ranges"  # ranges stopped working: go on at once, on one connection, from the contiguous prefix
    MISMATCH = "mismatch"  # complete, but the size or a hash is wrong


class Action(Enum):
    COMMIT = "commit"  # rename the verified partial onto the target
    NOW = "now"  # attempt again at once
    BACKOFF = "backoff"  # wait (Retry-After or exponential backoff), then attempt again
    RESTART = "restart"  # drop the partial, then attempt again from byte 0
    GIVE_UP = "give-up"  # fail this source with the attempt's reason


@dataclass(frozen=True)
class Step:
    """How one attempt ended."""

    outcome: Outcome
    reason: str = ""
    wait: float | None = None  # the server's Retry-After, for LOST
    progressed: bool = False  # bytes arrived during the attempt
    resumed: bool = False  # part of the bytes came from an earlier attempt or run
    one_stream: bool = False  # the server's ranges cannot be trusted: no segments from now on
    digests: dict[str, str] | None = None  # for COMPLETE
    problem: DownloadError | None = None  # for MISMATCH: the error to raise when giving up


@dataclass(frozen=True)
class Counters:
    """What the job remembers across attempts."""

    failures: int = 0  # failed attempts in a row without progress
    restarts: int = 0  # fresh starts from byte 0
    best: int = 0  # most bytes ever held: progress only counts when this grows


def decide(step: Step, held: int, counters: Counters, retries: int) -> tuple[Action, Counters]:
    """The next action after `step`, with `held` bytes in the partial now.

    >>> decide(Step(Outcome.LOST), 0, Counters(), retries=5)
    (<Action.BACKOFF: 'backoff'>, Counters(failures=1, restarts=0, best=0))
    >>> decide(Step(Outcome.LOST, progressed=True), 100, Counters(failures=5), retries=5)[0]
    <Action.BACKOFF: 'backoff'>
    """
    outcome = step.outcome
    if outcome is Outcome.COMPLETE:
        return Action.COMMIT, counters
    if outcome in (Outcome.CONTINUE, Outcome.NO_RANGES):
        return Action.NOW, counters
    if outcome is Outcome.STALE:
        counters = replace(counters, restarts=counters.restarts + 1)
        return (Action.GIVE_UP if counters.restarts > retries + 2 else Action.RESTART), counters
    if outcome is Outcome.MISMATCH:
        if step.resumed and counters.restarts == 0:
            # The prefix came from an earlier attempt: it may be the culprit.
            return Action.RESTART, replace(counters, restarts=1)
        return Action.GIVE_UP, counters
    if step.progressed and held > counters.best and outcome is not Outcome.SLOW:
        counters = replace(counters, best=held, failures=0)
    else:
        counters = replace(counters, failures=counters.failures + 1)
    return (Action.GIVE_UP if counters.failures > retries else Action.BACKOFF), counters
