"""The engine's decision after each attempt, as a table (download/states.py).

Each row: how an attempt ended, the bytes held after it, the counters before
it, and the action and counters the engine must go on with. RETRIES is the
`Settings.retries` of every row.
"""

from __future__ import annotations

import pytest

from ckptfetch.download.states import Action, Counters, Outcome, Step, decide

RETRIES = 3
C = Counters

ROWS: list[tuple[str, Step, int, Counters, Action, Counters]] = [
    # verified bytes are committed, whatever came before
    ("complete", Step(Outcome.COMPLETE), 100, C(2, 1, 50), Action.COMMIT, C(2, 1, 50)),
    # an interstitial page named the next URL; ranges stopped working: go on at once, nothing counted
    ("continue", Step(Outcome.CONTINUE), 0, C(1, 0, 0), Action.NOW, C(1, 0, 0)),
    ("no ranges", Step(Outcome.NO_RANGES), 70, C(0, 0, 70), Action.NOW, C(0, 0, 70)),
    # a transient failure without progress counts; the limit is RETRIES failures in a row
    ("lost, first", Step(Outcome.LOST), 0, C(), Action.BACKOFF, C(1, 0, 0)),
    ("lost, at the limit", Step(Outcome.LOST), 0, C(RETRIES - 1, 0, 0), Action.BACKOFF, C(RETRIES, 0, 0)),
    ("lost, past the limit", Step(Outcome.LOST), 0, C(RETRIES, 0, 0), Action.GIVE_UP, C(RETRIES + 1, 0, 0)),
    # progress (more bytes held than ever before) clears the failures
    ("lost after progress", Step(Outcome.LOST, progressed=True), 500, C(RETRIES, 0, 400), Action.BACKOFF,
     C(0, 0, 500)),
    # bytes that arrived but leave us no further than before are not progress (a restart re-fetching them)
    ("lost, progress below best", Step(Outcome.LOST, progressed=True), 300, C(1, 1, 400), Action.BACKOFF,
     C(2, 1, 400)),
    ("lost, no progress flag", Step(Outcome.LOST), 500, C(1, 0, 400), Action.BACKOFF, C(2, 0, 400)),
    # a connection under the minimum speed counts as a failure even though bytes arrived: a trickle
    # must not hold a download for ever
    ("trickle", Step(Outcome.SLOW, progressed=True), 500, C(0, 0, 400), Action.BACKOFF, C(1, 0, 400)),
    ("trickle, past the limit", Step(Outcome.SLOW, progressed=True), 900, C(RETRIES, 0, 800), Action.GIVE_UP,
     C(RETRIES + 1, 0, 800)),
    # a partial that cannot be continued restarts from byte 0, up to RETRIES + 2 times
    ("stale", Step(Outcome.STALE), 10, C(1, 0, 10), Action.RESTART, C(1, 1, 10)),
    ("stale, at the limit", Step(Outcome.STALE), 0, C(0, RETRIES + 1, 0), Action.RESTART, C(0, RETRIES + 2, 0)),
    ("stale, past the limit", Step(Outcome.STALE), 0, C(0, RETRIES + 2, 0), Action.GIVE_UP, C(0, RETRIES + 3, 0)),
    # wrong bytes: once from scratch when an earlier attempt's prefix may be the culprit, else the error
    ("mismatch, resumed", Step(Outcome.MISMATCH, resumed=True), 100, C(), Action.RESTART, C(0, 1, 0)),
    ("mismatch, resumed after a restart", Step(Outcome.MISMATCH, resumed=True), 100, C(0, 1, 0), Action.GIVE_UP,
     C(0, 1, 0)),
    ("mismatch, fresh", Step(Outcome.MISMATCH), 100, C(), Action.GIVE_UP, C()),
]


@pytest.mark.parametrize(("step", "held", "before", "action", "after"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decide(step: Step, held: int, before: Counters, action: Action, after: Counters) -> None:
    assert decide(step, held, before, RETRIES) == (action, after)


def test_every_outcome_has_a_row() -> None:
    assert {r[1].outcome for r in ROWS} == set(Outcome)


def test_every_action_is_reachable() -> None:
    assert {r[4] for r in ROWS} == set(Action)


def test_a_transient_failure_stays_transient_until_the_limit() -> None:
    """Walk the table: RETRIES failures back off, the next gives up, and one byte of progress starts over."""
    counters, actions = Counters(), []
    for _ in range(RETRIES + 1):
        action, counters = decide(Step(Outcome.LOST), 0, counters, RETRIES)
        actions.append(action)
    assert actions == [Action.BACKOFF] * RETRIES + [Action.GIVE_UP]
    action, counters = decide(Step(Outcome.LOST, progressed=True), 1, counters, RETRIES)
    assert (action, counters.failures) == (Action.BACKOFF, 0)

