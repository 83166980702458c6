"""One rate budget per key across a fleet: the rules, and the pacer that follows them.

Does no I/O: a ``BudgetStore`` does (``MemoryBudgetStore`` here, for one process and
the tests; the PostgreSQL ledger's for a fleet). Where ``_pacing.Pacer`` learns a
key's budget alone in each process, so N processes send N times what the server
allows, here every process of the fleet takes its turns from one schedule kept in
the store, a row per budget:

- **Slots.** ``next_at`` is the next free time slot; a process leases several at
  once (``exchange(want=n)``: up to ``HORIZON`` seconds' worth, at least one), so a
  request costs a fraction of one database round trip, and sends each request at
  its slot; it asks for the next lease when half its slots are spent. Nothing is
  leased beyond ``LOOKAHEAD`` s ahead (``HORIZON`` on an estimate), but one slot,
  a process's place in the queue. Slots held and not used within a spacing of
  their time are dropped, not saved up; slots that arrive late (a slow exchange)
  are used at once.
- **The spacing** is the fleet's, from the ``x-ratelimit-*-requests`` headers any
  process read: with a ``limit``, the bucket's refill rate (``limit - remaining``
  requests come back in ``reset`` s), a little under it, averaged over the reports;
  without one, the pacer's ``reset / (remaining + 1)``. Not the pacer's rule
  everywhere: slots are leased ahead, so the fleet learns of a spacing a
  ``HORIZON`` late, and spending a full bucket's remaining at once would empty
  it before anyone hears. Each report moves the fleet's spacing at most twofold.
  Reports ride on the next exchange, never a write each.
- **A 429 pauses the fleet.** Its wait (the server's ``retry-after``, else backoff)
  is reported at once and no slot is granted before it ends; the process that met
  it pauses at once, the others from their next exchange (within ``HORIZON``).
- **Without budget headers** the spacing is estimated as the pacer does, from the
  fleet's slots between 429s (a little under the rate that got through, probed
  upward as time passes). A budget nobody has learned yet starts cautious:
  ``COLD_SPACING`` apart, halving every ``SLOW_START_HALF_LIFE`` s until the first
  429 (a slow start, as TCP's), so a fleet that starts at once does not spend the
  bucket blind.
- Nothing in force (no spacing, no pause, the estimate negligible): a grant says
  "free for ``REFRESH`` s" and requests go at once until then.

Times in the store are on the store's clock, and only durations cross it (a delay
until the first slot, a spacing, a pause's length), so the processes' clocks need
not agree. A budget is named by a hash of the base URL and the key
(``budget_name``): no secret is stored. If the store fails, the pacer logs it once
and lets requests go (429 pauses still hold within the process) until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections import deque
from collections.abc import Mapping
from typing import Protocol

import attrs

from . import _errors as errors
from . import _retry
from ._pacing import REMAINING_HEADER, Budget, read_budget, throttle_wait
from ._protocol import status_error

logger = logging.getLogger("asyncvideos")

#: Slots leased at once: at most this many seconds' worth (at least one slot) ...
HORIZON = 0.25
#: ... and none further ahead than this on a spacing the headers told (HORIZON on an
#: estimate): the fleet's schedule is committed no longer.
LOOKAHEAD = 5.0
#: A grant of "no limit in force" lasts this long before the store is asked again.
REFRESH = 1.0
#: A budget no process has learned yet: this spacing at first ...
COLD_SPACING = 0.05
#: ... halving every this many seconds until the first 429.
SLOW_START_HALF_LIFE = 1.0
#: After a 429 without budget headers: the pacer's probe (about +7% rate per second).
HALF_LIFE = 10.0
_NEGLIGIBLE = 1e-4
_MIN_WINDOW = 0.5
_FIRST_GUESS = 0.1
_BACK_OFF = 1.5
_MARGIN = 1.1
#: The most slots one exchange grants, whatever the spacing.
MAX_GRANT = 64
#: A spacing learned from headers holds this long without a newer report.
SPACING_HOLDS = 10.0
#: The weight of a new report in the fleet's averaged spacing.
_SMOOTHING = 0.3
#: One report moves the fleet's spacing by at most this factor, either way.
_STEP = 2.0
#: Send this much under the refill rate the headers tell.
_HEADROOM = 1.05


def fleet_spacing(budget: Budget) -> float | None:
    """The spacing one response's budget headers ask of the whole fleet, if they tell.

    With a ``limit``: ``limit - remaining`` requests refill in ``reset`` s, so the
    bucket refills at that rate, and the fleet sends ``_HEADROOM`` under it.
    ``remaining`` is rounded down, which can overstate the rate of a nearly full
    bucket many times over: the store moves the fleet's spacing at most
    ``_STEP``-fold per report. A full bucket tells nothing (None). Without a
    ``limit``, the pacer's ``reset / (remaining + 1)``.
    """
    if budget.limit is None:
        return budget.interval
    spent = budget.limit - budget.remaining
    if spent < 1 or budget.reset <= 0:
        return None
    return _HEADROOM * budget.reset / spent


def budget_name(base_url: str, api_key: str) -> str:
    """The store's name for the budget of ``api_key`` at ``base_url``: a hash, not the key."""
    digest = hashlib.sha256(f"asyncvideos rate budget\0{base_url}\0{api_key}".encode())
    return "key:" + digest.hexdigest()[:32]


@attrs.frozen(slots=True)
class BudgetRow:
    """One budget as the store keeps it; times are seconds on the store's clock."""

    next_at: float
    spacing: float = 0.0  # from budget headers, averaged over the reports ...
    spacing_until: float = 0.0  # ... valid until then
    pause_until: float = 0.0
    estimated: float = 0.0  # without headers: the estimated spacing at estimated_at
    estimated_at: float = 0.0
    slow_start: bool = True  # no 429 yet: the estimate halves every SLOW_START_HALF_LIFE
    mark_at: float | None = None  # the previous 429 pause and the slots issued then
    mark_issued: int = 0
    issued: int = 0

    @classmethod
    def new(cls, now: float) -> BudgetRow:
        """A budget nobody has learned: the cold spacing, halving until a 429."""
        return cls(next_at=now, estimated=COLD_SPACING, estimated_at=now)

    def interval(self, now: float) -> float:
        """The fleet's spacing between requests at ``now`` (0: nothing in force)."""
        if now < self.spacing_until:
            return self.spacing
        if self.estimated:
            half_life = SLOW_START_HALF_LIFE if self.slow_start else HALF_LIFE
            decayed: float = self.estimated * 0.5 ** (max(now - self.estimated_at, 0.0) / half_life)
            if decayed >= _NEGLIGIBLE:
                return decayed
        return 0.0


@attrs.frozen(slots=True)
class Report:
    """What a process learned since its last exchange: a spacing from budget headers
    (valid ``spacing_for`` s), a 429's pause, and whether that 429 had no headers."""

    spacing: float | None = None
    spacing_for: float = 0.0
    pause: float = 0.0
    estimate: bool = False

    def merge(self, later: Report) -> Report:
        """This report and a later one: the later spacing, the longer pause."""
        spacing = self if later.spacing is None else later
        pause = later if later.pause >= self.pause else self
        return Report(spacing.spacing, spacing.spacing_for, pause.pause, pause.estimate)


@attrs.frozen(slots=True)
class Grant:
    """An exchange's answer: ``count`` slots, the first ``delay`` s from now and then
    ``spacing`` apart; or, with ``free_for`` > 0, no limit in force for that long.
    ``pause`` is what is left of the fleet's 429 pause."""

    delay: float = 0.0
    spacing: float = 0.0
    count: int = 0
    free_for: float = 0.0
    pause: float = 0.0


def exchange(
    row: BudgetRow | None, now: float, report: Report, want: int
) -> tuple[BudgetRow, Grant]:
    """Apply ``report`` to ``row`` (None: a new budget) and grant up to ``want`` slots.

    Pure: the store runs it under the row's lock and writes the row it returns.
    """
    if row is None:
        row = BudgetRow.new(now)
    if report.spacing is not None:
        # One response's headers tell the rate to within a request: an average of
        # the fleet's reports, while they hold, smooths that out.
        spacing = report.spacing
        if now < row.spacing_until and row.spacing > 0:
            step = min(max(spacing, row.spacing / _STEP), row.spacing * _STEP)
            spacing = (1 - _SMOOTHING) * row.spacing + _SMOOTHING * step
        row = attrs.evolve(row, spacing=spacing, spacing_until=now + report.spacing_for)
    if report.pause > 0:
        until = now + report.pause
        if until > row.pause_until:
            fresh = row.pause_until <= now  # a new pause, not one more 429 of the same
            if report.estimate and fresh:
                row = _estimate(row, now, report.pause)
            row = attrs.evolve(row, pause_until=until)
    spacing = row.interval(now)
    if spacing == 0 and row.pause_until <= now:
        return attrs.evolve(row, next_at=now), Grant(free_for=REFRESH)
    start = max(row.next_at, now, row.pause_until)
    pause = max(row.pause_until - now, 0.0)
    if want <= 0:
        return row, Grant(pause=pause)
    # Far ahead only on a spacing the headers told: an estimate (a cold start
    # above all) may be far off, and slots granted on it cannot be taken back.
    lookahead = LOOKAHEAD if now < row.spacing_until else HORIZON
    count = min(want, MAX_GRANT, max(1, math.floor(HORIZON / spacing)))
    if start > now + lookahead:
        # The fleet has leased what it may this far ahead: one slot, so that each
        # process holds its place in the queue without asking again and again.
        count = 1
    row = attrs.evolve(
        row,
        next_at=start + count * spacing,
        issued=row.issued + count,
    )
    return row, Grant(start - now, spacing, count, 0.0, pause)


def _estimate(row: BudgetRow, now: float, wait: float) -> BudgetRow:
    """The pacer's estimate (``_pacing.Pacer._estimate``), over the fleet's slots.

    The first 429 ends the slow start, its wait the first guess (a refilling bucket
    asks for about one request's worth); later ones measure the slots issued since
    the previous pause, over at least ``_MIN_WINDOW`` s.
    """
    current = row.interval(now)
    if row.mark_at is None or row.slow_start:
        estimated = max(min(wait, _FIRST_GUESS), current * _MARGIN)
        return attrs.evolve(
            row,
            estimated=estimated,
            estimated_at=now,
            slow_start=False,
            mark_at=now,
            mark_issued=row.issued,
            spacing_until=min(row.spacing_until, now),
        )
    if now - row.mark_at < _MIN_WINDOW:
        estimated = max(current, min(_BACK_OFF * max(current, wait), _FIRST_GUESS))
        return attrs.evolve(row, estimated=estimated, estimated_at=now)
    got_through = max(row.issued - row.mark_issued - 1, 1)
    estimated = min(_MARGIN * (now - row.mark_at) / got_through, _retry.MAX_RETRY_AFTER)
    return attrs.evolve(
        row, estimated=estimated, estimated_at=now, mark_at=now, mark_issued=row.issued
    )


def _give_up(waiter: asyncio.Future[bool]) -> None:
    """A waiter's deadline came before its turn."""
    if not waiter.done():
        waiter.set_result(False)


class BudgetStore(Protocol):
    """Where a fleet's budgets are kept: ``exchange`` runs the rules of this module
    atomically (one row, locked) and returns the grant."""

    async def exchange(self, name: str, report: Report, want: int) -> Grant: ...


class MemoryBudgetStore:
    """Budgets in this process's memory: clients of one process sharing a key, and tests."""

    def __init__(self) -> None:
        self.rows: dict[str, BudgetRow] = {}
        #: How many exchanges were made, for the cost per request.
        self.exchanges: int = 0

    async def exchange(self, name: str, report: Report, want: int) -> Grant:
        now = asyncio.get_running_loop().time()
        self.exchanges += 1
        self.rows[name], grant = exchange(self.rows.get(name), now, report, want)
        return grant


class SharedPacer:
    """When each request of one client may go, by the fleet's budget in a store.

    The client's side of this module: the same interface as ``_pacing.Pacer``
    (``engaged``, ``before_request``, ``after_response``, ``paused_until``).
    ``max_requests_per_second`` stays a floor of this client's own.
    """

    def __init__(
        self,
        store: BudgetStore,
        name: str,
        *,
        max_requests_per_second: float | None = None,
        adaptive: bool = True,
    ) -> None:
        self._store = store
        self._name = name
        self._floor = 0.0 if max_requests_per_second is None else 1.0 / max_requests_per_second
        self._adaptive = adaptive
        #: Every request asks: the fleet's state is in the store, not here.
        self.engaged: bool = True
        #: Slots granted: (when, usable until). A slot that arrives late (the
        #: exchange took longer than its delay) is still the fleet's gift to this
        #: process; one held and not used within a spacing of its time is not.
        self._slots: deque[tuple[float, float]] = deque()
        self._spacing = 0.0  # of the slots held
        self._granted = 0  # how many the last grant gave
        self._free_until = -math.inf
        self._pause_until = 0.0
        self._last = -math.inf
        self._streak = 0
        self._report = Report()
        self._asking: asyncio.Task[None] | None = None
        self._failed = False
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def paused_until(self) -> float:
        """The loop time this client's 429 pause lasts until (in the past when none)."""
        return self._pause_until

    # -- taking turns ----------------------------------------------------------------

    async def before_request(self, deadline: float | None = None) -> bool:
        """Wait for this request's turn (a slot of the fleet's, or a free period);
        False when the loop time ``deadline`` comes first (the waiter then leaves)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._waiters and self._may_go(now):
            self._take(now)
            return True
        if deadline is not None and deadline <= now:
            return False
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        expiry = None if deadline is None else loop.call_at(deadline, _give_up, waiter)
        try:
            return await waiter
        finally:
            if expiry is not None:
                expiry.cancel()
            if not waiter.done() or not waiter.result():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)  # timed out or cancelled: out of the queue

    def _may_go(self, now: float) -> bool:
        if now < self._pause_until or now < self._last + self._floor:
            return False
        if now < self._free_until:
            return True
        # A slot missed by more than a spacing is the fleet's no longer.
        while self._slots and self._slots[0][1] < now:
            self._slots.popleft()
        return bool(self._slots) and self._slots[0][0] <= now

    def _take(self, now: float) -> None:
        self._last = now
        if now >= self._free_until:
            self._slots.popleft()
            # Half the slots spent and more requests waiting than slots held: ask
            # for the next lease now, so it arrives before these run out.
            wanting = len(self._waiters) - len(self._slots)
            if 2 * len(self._slots) <= self._granted and wanting > 0:
                self._ask(asyncio.get_running_loop(), wanting)

    def _turn(self, now: float) -> float | None:
        """When the next waiter may go, or None until the store grants more slots."""
        if now < self._free_until:
            at = now
        elif self._slots:
            at = self._slots[0][0]
        else:
            return None
        return max(at, self._pause_until, self._last + self._floor)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._waiters:
            return
        now = loop.time()
        self._may_go(now)  # drops missed slots
        when = self._turn(now)
        if when is None:
            self._ask(loop, len(self._waiters))
            return
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._waiters and self._may_go(now):
            waiter = self._waiters.popleft()
            if not waiter.done():  # skip the cancelled
                waiter.set_result(True)
                self._take(now)
                break
        self._schedule(loop)

    def _ask(self, loop: asyncio.AbstractEventLoop, want: int) -> None:
        """Start an exchange with the store unless one is under way."""
        if self._asking is None:
            self._asking = loop.create_task(self._exchange(want))

    async def _exchange(self, want: int) -> None:
        loop = asyncio.get_running_loop()
        report, self._report = self._report, Report()
        try:
            grant = await self._store.exchange(self._name, report, want)
        except Exception as error:  # the store is down: go on alone, say so once
            if not self._failed:
                logger.warning(
                    "The shared rate budget's store failed (%s): requests go unpaced "
                    "by the fleet until it answers",
                    type(error).__name__,
                )
                self._failed = True
            self._report = report.merge(self._report)
            grant = Grant(free_for=REFRESH)
        else:
            self._failed = False
        finally:
            self._asking = None
        now = loop.time()
        if grant.pause:
            self._pause_until = max(self._pause_until, now + grant.pause)
        if grant.free_for:
            self._free_until = now + grant.free_for
            self._slots.clear()
        elif grant.count:
            self._free_until = -math.inf
            self._spacing = grant.spacing
            first = now + grant.delay
            grace = max(grant.spacing, 1e-3)
            self._granted = grant.count
            for i in range(grant.count):
                at = first + i * grant.spacing
                self._slots.append((at, max(at, now) + grace))
            if len(self._slots) > grant.count:  # a lease asked for ahead: keep them in order
                self._slots = deque(sorted(self._slots))
        if self._report.pause:
            self._ask(loop, len(self._waiters))  # a 429 met meanwhile: the fleet must know
        self._schedule(loop)

    # -- learning ----------------------------------------------------------------------

    def after_response(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Learn from a response; what the fleet must know goes with the next exchange."""
        if not self._adaptive:
            return
        budget = read_budget(headers) if REMAINING_HEADER in headers else None
        loop = asyncio.get_running_loop()
        if budget is not None:
            spacing = fleet_spacing(budget)
            if spacing is not None:
                self._report = self._report.merge(Report(spacing, SPACING_HOLDS))
            if budget.interval > 0 and loop.time() < self._free_until:
                self._free_until = -math.inf  # a limit is in force: take slots from now on
        if status == 429:
            self._throttled(status_error(status, headers, body), loop, estimate=budget is None)
        elif status < 400:
            self._streak = 0

    def _throttled(
        self, error: errors.APIStatusError, loop: asyncio.AbstractEventLoop, *, estimate: bool
    ) -> None:
        wait = throttle_wait(error, self._streak)
        if wait is None:
            return
        self._streak += 1
        if not _retry._waits_enabled:
            return
        now = loop.time()
        until = now + wait
        if until <= self._pause_until:
            return
        if self._pause_until <= now:
            cause = "the server's retry-after" if error.retry_after is not None else "backoff"
            logger.info(
                "Rate limited (HTTP 429): pausing every request of the fleet's budget "
                "for %.3f s (%s)",
                wait,
                cause,
            )
        self._pause_until = until
        self._free_until = -math.inf
        # Slots inside the pause are lost; the fleet's next ones start after it.
        while self._slots and self._slots[0][0] < until:
            self._slots.popleft()
        self._report = self._report.merge(Report(pause=wait, estimate=estimate))
        self._ask(loop, len(self._waiters))
