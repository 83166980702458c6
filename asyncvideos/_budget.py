"""One rate budget per key across a fleet: the rules, and the pacer that follows them.

Does no I/O: a ``BudgetStore`` does (``MemoryBudgetStore`` here, for one process and
the tests; the PostgreSQL ledger's for a fleet). Where ``_pacing.Pacer`` learns a
key's budget alone in each process, so N processes send N times what the server
allows, here every process of the fleet takes its turns from one schedule kept in
the store, a row per budget. The fleet is one control loop: whatever any process
learns changes the one schedule, and no process acts on a schedule older than a
block of slots.

- **Slots, in blocks.** ``next_at`` is the next free time slot; a process leases a
  block of them at once (``exchange(want=n)``: ``HORIZON`` seconds' worth, at least
  ``MIN_BLOCK`` and at most ``MAX_GRANT`` slots), so a request costs a fraction of
  one database round trip, and sends each request at its slot. A block that starts
  within one block's time from now is firm; one further ahead is a reservation,
  the process's place in the queue, which it confirms with an exchange (the one
  that leases its next block) once it is that near. So a process never sends on a
  schedule more than about two blocks older than the fleet's. Slots held and not
  used within a spacing of their time are dropped, not saved up; slots that arrive
  late (a slow exchange) are used at once.
- **The schedule is rebuilt** (``generation`` + 1) when a 429 meets a slot of the
  current schedule, and when the budget headers move the fleet's spacing more than
  ``REBUILD``-fold: every reservation is void, and each process drops its own when
  it comes to confirm, so the new spacing holds from about a block on.
- **With budget headers** (``x-ratelimit-*-requests`` and a ``limit``): the bucket
  refills at ``(limit - remaining) / reset`` requests/s, ``remaining`` being rounded
  down (so ``limit - remaining - 0.5`` is the unbiased count), averaged over the
  fleet's reports; the fleet sends at that rate times ``(0.9 + 0.2 * level) /
  HEADROOM``, where ``level`` is ``remaining / limit`` in the freshest report. A
  feedback on the bucket's level: at 3/4 full the fleet sends at the refill rate,
  so the bucket settles there; where the rate read is off, it settles fuller or
  emptier but not empty, and a full bucket is spent down slowly, never at once. Without a
  ``limit``, the pacer's ``reset / (remaining + 1)``. Reports ride on the next
  exchange, never a write each.
- **A 429 pauses the fleet.** Its wait (the server's ``retry-after``, else backoff)
  is reported at once, no slot is granted before it ends, and the schedule is
  rebuilt. The process that met it pauses and drops its firm slots at once.
- **Without budget headers** the fleet's rate is estimated from its 429s, one
  control loop for the fleet (an AIMD): a 429 on a slot of the current schedule is
  one congestion event, the 429s on slots leased before it (other processes' in
  flight) are its echoes and count for nothing more. At an event the rate falls:
  to the rate that got through since the previous event (the slots issued in
  between, over its length: a bucket is empty at both 429s, so what got through is
  what it refilled), ``MARGIN`` under it; where that window was too short to
  measure, to half. It then rises again: quickly (``RECOVERY_SLOTS``, at least
  ``RECOVERY_SECONDS``) back towards ``MARGIN`` under the last rate measured (or
  that failed), then slowly, ``MARGIN`` more every ``PROBE_SLOTS`` slots issued,
  so a probe costs one 429 in hundreds of requests whatever the limit. It rises
  with slots used, not with time: a fleet that does not use its rate learns
  nothing from it. A budget nobody has learned yet starts with a slow start:
  ``COLD_SPACING`` apart, the rate doubling every ``SLOW_START_DOUBLING`` s, in
  short blocks: ``SLOW_START_SECONDS`` of the rate, at least ``SLOW_START_BLOCK``
  slots (a bucket's burst hides the limit, so the first 429 comes at twice it or
  more, and what is leased then mostly meets 429s).
- **A process asks for what it is waiting for**, one slot per request queued,
  so the fleet's queue stays short; but where a block is at most ``SHORT_LEASE``
  of the fleet's time (a high rate), it asks for the whole block, or a steady
  flow of requests one at a time would cost an exchange per request or two.
- Nothing in force (no spacing, no pause, the estimate negligible): a grant says
  "free for ``REFRESH`` s" and requests go at once until then.

Times in the store are on the store's clock, and only durations cross it (a delay
until the first slot, a spacing, a pause's length, an age), so the processes'
clocks need not agree. A budget is named by a hash of the base URL and the key
(``budget_name``): no secret is stored. If the store fails, the pacer logs it once
and lets requests go (429 pauses still hold within the process) until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
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

#: A block of slots is this many seconds' worth ...
HORIZON = 0.25
#: ... and at least this many slots (on budget headers or an estimate) ...
MIN_BLOCK = 4
#: ... and at most this many (at most ``ESTIMATE_BLOCK`` on an estimate, which
#: reacts within about two blocks: the fewer slots, the fewer 429s per event).
MAX_GRANT = 64
ESTIMATE_BLOCK = 8
#: A grant of "no limit in force" lasts this long before the store is asked again.
REFRESH = 1.0
#: A budget no process has learned yet: this spacing at first ...
COLD_SPACING = 0.025
#: ... the rate doubling every this many seconds until the first 429, in blocks of
#: this many seconds' worth of slots, and at least this many slots.
SLOW_START_DOUBLING = 1.0
SLOW_START_SECONDS = 0.01
SLOW_START_BLOCK = 2
#: A lease this short (a block's time) is asked for whole, not one slot per request.
SHORT_LEASE = 0.01
#: Without budget headers, send this much under the rate measured.
MARGIN = 1.05
#: After an event, the rate halves its gap to the target every this many slots,
#: and no faster than every this many seconds (so the next window can measure) ...
RECOVERY_SLOTS = 16
RECOVERY_SECONDS = 0.3
#: ... then rises by MARGIN every this many slots issued.
PROBE_SLOTS = 400
#: A window between two events measures the rate when it is this long, and this many
#: slots got through in it.
MIN_WINDOW = 0.2
MIN_MEASURE = 16
#: A rate learned from budget headers holds this long without a newer report ...
SPACING_HOLDS = 10.0
#: ... and the reports' weight halves every this many seconds.
REFILL_HALF_LIFE = 5.0
#: Send this much under the refill rate the headers tell with the bucket half full
#: (at the refill rate at 3/4 full, where the bucket then settles).
HEADROOM = 1.05
#: The schedule is rebuilt when the headers move the spacing more than this, either way.
REBUILD = 1.25
_NEGLIGIBLE = 1e-4


def refill_report(budget: Budget) -> tuple[float, float] | None:
    """What one response's budget headers tell of the bucket's refill rate: requests
    that came back, and in how many seconds (None when they tell nothing).

    With a ``limit``, ``limit - remaining`` requests refill in ``reset`` s. The
    true count lies within a request under that (``remaining`` is rounded down), so
    half a request less, and it is at least one (the response's own request): one
    spent is one exactly. A full bucket, or headers without a ``limit``, tell no
    refill rate.
    """
    if budget.limit is None:
        return None
    spent = budget.limit - budget.remaining
    if spent < 1 or budget.reset <= 0:
        return None
    return max(spent - 0.5, 1.0), budget.reset


def budget_name(base_url: str, api_key: str) -> str:
    """The store's name for the budget of ``api_key`` at ``base_url``: a hash, not the key."""
    digest = hashlib.sha256(f"asyncvideos rate budget\0{base_url}\0{api_key}".encode())
    return "key:" + digest.hexdigest()[:32]


@attrs.frozen(slots=True)
class BudgetRow:
    """One budget as the store keeps it; times are seconds on the store's clock."""

    next_at: float
    generation: int = 0  # the schedule's; rebuilt at events and big changes of spacing
    event_generation: int = 0  # the schedule the last congestion event rebuilt
    built: float = 0.0  # the spacing from headers the schedule was last built on
    refill: float = 0.0  # the bucket's refill rate (requests/s), from budget headers ...
    refill_weight: float = 0.0  # ... and the reports' weight (seconds of reset), ...
    refill_at: float = 0.0  # ... at this time (it holds SPACING_HOLDS from then)
    level: float = 0.5  # remaining / limit in the freshest report ...
    level_at: float = 0.0  # ... read then
    spacing: float = 0.0  # from budget headers without a limit ...
    spacing_until: float = 0.0  # ... valid until then
    pause_until: float = 0.0
    estimated: float = 0.0  # without headers: the estimated rate (requests/s) ...
    estimated_at: float = 0.0  # ... set then ...
    estimated_issued: int = 0  # ... when this many slots had been issued
    ceiling: float = 0.0  # the rate the last event measured (or that failed) ...
    measured: bool = False  # ... and which
    slow_start: bool = True  # no event yet: the rate doubles every SLOW_START_DOUBLING
    mark_at: float | None = None  # the last event, and the slots issued by then
    mark_issued: int = 0
    issued: int = 0  # slots issued and not void, less those reported unused ...
    last_spacing: float = 0.0  # ... the last ones this far apart

    @classmethod
    def new(cls, now: float) -> BudgetRow:
        """A budget nobody has learned: the cold spacing, a slow start until a 429."""
        return cls(next_at=now, estimated=1 / COLD_SPACING, estimated_at=now)

    def headed(self, now: float) -> bool:
        """Whether budget headers tell the fleet's spacing at ``now``."""
        return (self.refill > 0 and now < self.refill_at + SPACING_HOLDS) or (
            now < self.spacing_until
        )

    def interval(self, now: float) -> float:
        """The fleet's spacing between requests at ``now`` (0: nothing in force)."""
        if self.refill > 0 and now < self.refill_at + SPACING_HOLDS:
            return HEADROOM / (self.refill * (0.9 + 0.2 * self.level))
        if now < self.spacing_until:
            return self.spacing
        rate = self.estimated_rate(now)
        return 1 / rate if rate and 1 / rate >= _NEGLIGIBLE else 0.0

    def due(self, now: float) -> int:
        """The slots issued whose time has come by ``now`` (those ahead are not used yet)."""
        if self.next_at <= now or not self.last_spacing:
            return self.issued
        return self.issued - math.ceil((self.next_at - now) / self.last_spacing)

    def estimated_rate(self, now: float) -> float:
        """Without headers: the fleet's rate (requests/s) at ``now``, 0 for none."""
        if not self.estimated:
            return 0.0
        slots = max(self.due(now) - self.estimated_issued, 0)
        if self.slow_start:
            # At full use, doubling every SLOW_START_DOUBLING s: ln 2 more per slot.
            return self.estimated + math.log(2) * slots / SLOW_START_DOUBLING
        rate = self.estimated
        target = self.ceiling / MARGIN
        if rate < target:
            seconds = max(now - self.estimated_at, 0.0)
            progress = min(slots / RECOVERY_SLOTS, seconds / RECOVERY_SECONDS)
            rate = target - (target - rate) * 0.5**progress
        return float(rate * MARGIN ** min(slots / PROBE_SLOTS, 1e3))


@attrs.frozen(slots=True)
class Report:
    """What a process learned since its last exchange.

    ``refill_spent`` requests came back in ``refill_reset`` s (summed over the
    responses with a ``limit``), the freshest ``level`` was read ``level_age`` s ago;
    ``spacing`` is the pacer's rule for headers without a limit (valid
    ``spacing_for`` s); ``pause`` is a 429's wait, ``estimate`` whether it had no
    headers, ``generation`` the schedule of the slot it met; ``unused`` slots were
    dropped unused.
    """

    refill_spent: float = 0.0
    refill_reset: float = 0.0
    level: float | None = None
    level_age: float = 0.0
    spacing: float | None = None
    spacing_for: float = 0.0
    pause: float = 0.0
    estimate: bool = False
    generation: int = -1
    unused: int = 0

    def merge(self, later: Report) -> Report:
        """This report and a later one: sums added, the later level and spacing, the
        longer pause, the newest schedule a 429 met."""
        level = self if later.level is None else later
        spacing = self if later.spacing is None else later
        met = [report for report in (self, later) if report.pause]
        return Report(
            self.refill_spent + later.refill_spent,
            self.refill_reset + later.refill_reset,
            level.level,
            level.level_age,
            spacing.spacing,
            spacing.spacing_for,
            max(self.pause, later.pause),
            any(report.estimate for report in met),
            max((report.generation for report in met), default=-1),
            self.unused + later.unused,
        )


@attrs.frozen(slots=True)
class Grant:
    """An exchange's answer: ``count`` slots, the first ``delay`` s from now and then
    ``spacing`` apart, of schedule ``generation``; slots later than ``firm`` s from
    now must be confirmed by an exchange made within ``firm`` s of them. Or, with
    ``free_for`` > 0, no limit in force for that long. ``pause`` is what is left of
    the fleet's 429 pause."""

    delay: float = 0.0
    spacing: float = 0.0
    count: int = 0
    free_for: float = 0.0
    pause: float = 0.0
    generation: int = 0
    firm: float = 0.0


def exchange(
    row: BudgetRow | None, now: float, report: Report, want: int
) -> tuple[BudgetRow, Grant]:
    """Apply ``report`` to ``row`` (None: a new budget) and grant up to ``want`` slots.

    Pure: the store runs it under the row's lock and writes the row it returns.
    """
    if row is None:
        row = BudgetRow.new(now)
    row = _learn(row, now, report)
    if row.next_at < now and row.estimated and not row.headed(now):
        # The schedule stood idle: the estimate rises as if its slots had been used
        # (a rate not used tells nothing, and is forgotten as fast as it is probed).
        idle = (now - row.next_at) * row.estimated_rate(now)
        row = attrs.evolve(row, estimated_issued=row.estimated_issued - math.floor(idle))
    if report.pause > 0:
        if report.generation >= row.event_generation:
            # A 429 on a slot of the schedule since the last event: a new event. One
            # on an older slot was in flight when the fleet learned: an echo.
            row = _event(row, now, report)
        row = attrs.evolve(row, pause_until=max(row.pause_until, now + report.pause))
    spacing = row.interval(now)
    pause = max(row.pause_until - now, 0.0)
    if spacing == 0:  # nothing in force but perhaps a pause: free once it ends
        return attrs.evolve(row, next_at=now), Grant(
            free_for=pause + REFRESH, pause=pause, generation=row.generation
        )
    block = _block(row, now, spacing)
    firm = block * spacing
    start = max(row.next_at, now, row.pause_until)
    count = min(max(want, 0), block)
    if count:
        row = attrs.evolve(
            row, next_at=start + count * spacing, issued=row.issued + count, last_spacing=spacing
        )
    return row, Grant(start - now, spacing, count, 0.0, pause, row.generation, firm)


def _block(row: BudgetRow, now: float, spacing: float) -> int:
    """Slots per lease: HORIZON's worth, fewer on an estimate (the fleet reacts faster)."""
    if row.headed(now):
        return min(MAX_GRANT, max(MIN_BLOCK, math.floor(HORIZON / spacing)))
    if row.slow_start:
        # What is leased when the first 429 comes mostly meets 429s: a lease stays
        # a few milliseconds long, whatever the rate.
        slots = math.floor(SLOW_START_SECONDS / spacing)
        return min(ESTIMATE_BLOCK, max(SLOW_START_BLOCK, slots))
    return min(ESTIMATE_BLOCK, max(MIN_BLOCK, math.floor(HORIZON / spacing)))


def _learn(row: BudgetRow, now: float, report: Report) -> BudgetRow:
    """The budget headers' news: the refill rate, the bucket's level, a spacing."""
    spacing = row.interval(now)
    if report.refill_reset > 0 and report.refill_spent > 0:
        held = now < row.refill_at + SPACING_HOLDS
        weight = (
            row.refill_weight * 0.5 ** ((now - row.refill_at) / REFILL_HALF_LIFE) if held else 0
        )
        total = weight + report.refill_reset
        refill = (row.refill * weight + report.refill_spent) / total
        row = attrs.evolve(row, refill=refill, refill_weight=total, refill_at=now)
    if report.level is not None and now - report.level_age >= row.level_at:
        row = attrs.evolve(
            row, level=min(max(report.level, 0.0), 1.0), level_at=now - report.level_age
        )
    if report.spacing is not None:
        row = attrs.evolve(row, spacing=report.spacing, spacing_until=now + report.spacing_for)
    if report.unused:
        row = attrs.evolve(row, issued=max(row.issued - report.unused, row.mark_issued))
    if row.headed(now):
        built = row.interval(now)
        if not row.built or not row.built / REBUILD <= built <= row.built * REBUILD:
            row = attrs.evolve(_rebuild(row, now, spacing), built=built)
    return row


def _rebuild(row: BudgetRow, now: float, spacing: float) -> BudgetRow:
    """A new schedule: the reservations on the old one (``spacing`` apart) are void,
    no longer counted as issued; the firm slots, within a block from now, stand."""
    spacing = spacing or COLD_SPACING
    cut = min(row.next_at, now + _block(row, now, spacing) * spacing)
    void = max(math.floor((row.next_at - max(cut, row.pause_until)) / spacing), 0)
    return attrs.evolve(row, next_at=cut, issued=row.issued - void, generation=row.generation + 1)


def _event(row: BudgetRow, now: float, report: Report) -> BudgetRow:
    """A congestion event: the schedule rebuilt and, without headers, the rate cut."""
    if row.headed(now) or not report.estimate:
        row = _rebuild(row, now, row.interval(now))
        return attrs.evolve(row, event_generation=row.generation)
    rate = row.estimated_rate(now)
    spacing = 1 / rate if rate else COLD_SPACING
    row = _rebuild(row, now, spacing)
    # The slots whose time has come: those still ahead are not sent yet.
    sent = row.due(now)
    ceiling, estimated, measured = rate, rate / 2, False
    if not row.slow_start and row.mark_at is not None:
        window = now - row.mark_at
        # Less the 429 that closed the window: a bucket refills within a request.
        got = sent - row.mark_issued - 1
        if window >= MIN_WINDOW and got >= MIN_MEASURE:
            ceiling, measured = min(got / window, rate), True
            estimated = min(ceiling / MARGIN, rate)
        elif row.measured:
            # Too soon after a measure: it was a little high. Under the rate that failed.
            ceiling, measured = min(row.ceiling, rate) / MARGIN, True
            estimated = ceiling / MARGIN
        elif row.ceiling:
            ceiling = min(row.ceiling, rate)
    return attrs.evolve(
        row,
        event_generation=row.generation,
        estimated=max(min(estimated, 1 / _NEGLIGIBLE), 1 / _retry.MAX_RETRY_AFTER),
        estimated_at=now,
        estimated_issued=sent,
        ceiling=ceiling,
        measured=measured,
        slow_start=False,
        mark_at=now,
        mark_issued=sent,
    )


def _give_up(waiter: asyncio.Future[int | None]) -> None:
    """A waiter's deadline came before its turn."""
    if not waiter.done():
        waiter.set_result(None)


#: The slot the current task's request went on: (the pacer, its schedule's generation),
#: so that a 429 says which schedule it met.
_SLOT: contextvars.ContextVar[tuple[int, int]] = contextvars.ContextVar(
    "asyncvideos_budget_slot", default=(0, -1)
)


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


@attrs.define(slots=True)
class _Slot:
    at: float  # when it may be used
    until: float  # and until when (later, it is dropped)
    generation: int
    confirm_at: float  # when to confirm it, if it is not firm: so is its whole block


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
        #: Slots granted, in time order. A slot that arrives late (the exchange took
        #: longer than its delay) is still the fleet's gift to this process; one held
        #: and not used within a spacing of its time is not.
        self._slots: deque[_Slot] = deque()
        self._granted = 0  # how many the last grant gave
        self._block = MIN_BLOCK  # slots per lease, by the last grant
        self._generation = 0  # the newest schedule this process has heard of
        self._firm_until = -math.inf  # slots up to then need no confirming ...
        self._firm = 0.0  # ... a block's time, by the last grant
        self._free_until = -math.inf
        self._pause_until = 0.0
        self._last = -math.inf
        self._streak = 0
        self._report = Report()
        self._level_at = -math.inf  # when the report's level was read
        self._asking: asyncio.Task[None] | None = None
        self._failed = False
        self._waiters: deque[asyncio.Future[int | None]] = deque()
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
            _SLOT.set((id(self), self._take(now)))
            return True
        if deadline is not None and deadline <= now:
            return False
        waiter: asyncio.Future[int | None] = loop.create_future()
        self._waiters.append(waiter)
        self._schedule(loop)
        expiry = None if deadline is None else loop.call_at(deadline, _give_up, waiter)
        try:
            generation = await waiter
        finally:
            if expiry is not None:
                expiry.cancel()
            if not waiter.done() or waiter.result() is None:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)  # timed out or cancelled: out of the queue
        if generation is None:
            return False
        _SLOT.set((id(self), generation))
        return True

    def _drop_missed(self, now: float) -> None:
        """A slot missed by more than a spacing is the fleet's no longer."""
        while self._slots and self._slots[0].until < now:
            self._slots.popleft()
            self._report = self._report.merge(Report(unused=1))

    def _may_go(self, now: float) -> bool:
        if now < self._pause_until or now < self._last + self._floor:
            return False
        if now < self._free_until:
            return True
        self._drop_missed(now)
        if not self._slots:
            return False
        slot = self._slots[0]
        return slot.at <= now and slot.at <= self._firm_until

    def _take(self, now: float) -> int:
        """Spend the turn: the generation of the slot taken."""
        self._last = now
        if now < self._free_until:
            return self._generation
        slot = self._slots.popleft()
        # Half the slots spent, none reserved further, and more requests waiting than
        # slots held: ask for the next lease now, so it arrives before these run out
        # (a reservation is asked for when it is confirmed).
        reserved = self._slots and self._slots[-1].at > self._firm_until
        if not reserved and 2 * len(self._slots) <= self._granted and self._wanted() > 0:
            self._ask(asyncio.get_running_loop())
        return slot.generation

    def _turn(self, now: float) -> float | None:
        """When the next waiter may go, or None until the store grants (or confirms)."""
        if now < self._free_until:
            at = now
        elif self._slots and self._slots[0].at <= self._firm_until:
            at = self._slots[0].at
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
            if self._slots:
                # A reservation: confirm its block a block's time before the block's
                # last slot, with the exchange that leases the next block.
                when = self._slots[0].confirm_at
                if when <= now:
                    self._ask(loop)
                    return
            else:
                self._ask(loop)
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
                waiter.set_result(self._take(now))
                break
        self._schedule(loop)

    def _wanted(self) -> int:
        """Slots to ask for: one per waiter not served by those held (a whole block
        where a block is a short lease), while no more than a block is held, up to
        two (the one in use and the next): the fleet's queue stays short."""
        held = len(self._slots)
        ahead = sum(1 for slot in self._slots if slot.at > self._firm_until)
        if ahead > self._block or len(self._waiters) <= held:
            return 0
        wanted = len(self._waiters) - held
        if 0 < self._firm <= SHORT_LEASE:
            # A block is a few milliseconds of the fleet's: asking for one per
            # request would be an exchange per request or two at a high rate.
            wanted = max(wanted, self._block)
        return max(min(wanted, 2 * self._block - ahead), 0)

    def _ask(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start an exchange with the store unless one is under way."""
        if self._asking is None:
            self._asking = loop.create_task(self._exchange(self._wanted()))

    async def _exchange(self, want: int) -> None:
        loop = asyncio.get_running_loop()
        report, self._report = self._report, Report()
        if report.level is not None:
            report = attrs.evolve(report, level_age=max(loop.time() - self._level_at, 0.0))
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
            grant = Grant(free_for=REFRESH, generation=self._generation)
        else:
            self._failed = False
        finally:
            self._asking = None
        now = loop.time()
        if grant.generation > self._generation:
            # A new schedule: the reservations of older ones are void; slots this
            # process held firm stand (the store kept their place).
            self._slots = deque(s for s in self._slots if s.at <= self._firm_until)
            self._generation = grant.generation
        if grant.pause:
            self._pause_until = max(self._pause_until, now + grant.pause)
        if grant.free_for:
            self._free_until = now + grant.free_for
            self._slots.clear()
        else:
            self._free_until = -math.inf
            self._firm = grant.firm
            self._firm_until = now + grant.firm
            first = now + grant.delay
            grace = max(grant.spacing, 1e-3)
            for slot in self._slots:  # confirmed late: usable at once, as a late grant is
                if slot.at <= self._firm_until:
                    slot.until = max(slot.until, now + grace)
            if grant.spacing:
                self._block = max(round(grant.firm / grant.spacing), 1)
            if grant.count:
                self._granted = grant.count
            confirm_at = first + (grant.count - 1) * grant.spacing - grant.firm
            for i in range(grant.count):
                at = first + i * grant.spacing
                self._slots.append(_Slot(at, max(at, now) + grace, grant.generation, confirm_at))
            if len(self._slots) > grant.count:  # a lease asked for ahead: keep them in order
                self._slots = deque(sorted(self._slots, key=lambda slot: slot.at))
        if self._report.pause:
            self._ask(loop)  # a 429 met meanwhile: the fleet must know
        self._schedule(loop)

    # -- learning ----------------------------------------------------------------------

    def after_response(self, status: int, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Learn from a response; what the fleet must know goes with the next exchange."""
        if not self._adaptive:
            return
        budget = read_budget(headers) if REMAINING_HEADER in headers else None
        loop = asyncio.get_running_loop()
        if budget is not None:
            self._read(budget, loop.time())
        if status == 429:
            self._throttled(status_error(status, headers, body), loop, estimate=budget is None)
        elif status < 400:
            self._streak = 0

    def _read(self, budget: Budget, now: float) -> None:
        if budget.limit is None:
            report = Report(spacing=budget.interval, spacing_for=SPACING_HOLDS)
        else:
            spent, reset = refill_report(budget) or (0.0, 0.0)
            level = budget.remaining / budget.limit if budget.limit else 0.0
            report = Report(spent, reset, level)
            self._level_at = now
        self._report = self._report.merge(report)
        if budget.interval > 0 and now < self._free_until:
            self._free_until = -math.inf  # a limit is in force: take slots from now on

    def _throttled(
        self, error: errors.APIStatusError, loop: asyncio.AbstractEventLoop, *, estimate: bool
    ) -> None:
        wait = throttle_wait(error, self._streak)
        if wait is None:
            return
        self._streak += 1
        if not _retry._waits_enabled:
            return
        owner, generation = _SLOT.get()
        if owner != id(self):
            generation = self._generation
        now = loop.time()
        until = now + wait
        if self._pause_until <= now:
            cause = "the server's retry-after" if error.retry_after is not None else "backoff"
            logger.info(
                "Rate limited (HTTP 429): pausing every request of the fleet's budget "
                "for %.3f s (%s)",
                wait,
                cause,
            )
        self._pause_until = max(self._pause_until, until)
        self._free_until = -math.inf
        # The bucket is empty: the firm slots of this schedule would meet 429s too.
        # Reservations stay until confirmed (the store voids them if it rebuilds).
        dropped = 0
        while self._slots and self._slots[0].at <= self._firm_until:
            self._slots.popleft()
            dropped += 1
        self._report = self._report.merge(
            Report(pause=wait, estimate=estimate, generation=generation, unused=dropped)
        )
        self._ask(loop)
