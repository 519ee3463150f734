"""Progress of a run with the time left for every phase.

A session reports ``PhaseProgress`` (phase, done of total units). The tracker timestamps phase
changes and estimates the time left:

- the running phase, when its work is countable and under way (iterations, ciphertexts to
  decrypt): the time per unit between the first and the last unit seen done, times the units
  left, less the time already spent since (so the estimate falls smoothly between two
  iterations); before two units were seen, the last run's duration, or the rate so far;
- otherwise (a handshake or the final acknowledgements wait for peers, not for work), and for
  phases not yet started: the phase's duration in the last successful run minus what has
  elapsed, when there was one; else unknown (None).

The phase a session reports is the running one: a bank that has its own result may still
serve a peer's decryption after it entered ``finishing``, and reports the decryption
meanwhile, so the decryption runs here until the session reports ``finishing`` (the phases'
times stay those of the session's record).

The whole run's time left is the sum over the running and pending phases, unknown if any
part but the final acknowledgements is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from riskprop.node.runner import Tick
from riskprop.protocol.session import PhaseProgress

log = logging.getLogger(__name__)

#: The phases of a run, in order.
PHASES = ("handshake", "iterating", "decrypting", "finishing")
#: Phases whose time left follows from the rate of their own work.
COUNTED = ("iterating", "decrypting")


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min``, ``1.5 h``; ``?`` for unknown."""
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{max(0.0, seconds):.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressTracker:
    """Phase times and estimates of one run (see the module doc)."""

    def __init__(
        self,
        estimates: Mapping[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        session_clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        """``clock`` is the tracker's own; ``session_clock`` the one the session's phase records
        use (``time.monotonic``), mapped onto ``clock`` at each tick."""
        self.estimates = dict(estimates or {})
        self.clock = clock
        self.session_clock = session_clock
        self.name = name
        self.started = clock()
        self.phase = "starting"
        self.state: PhaseProgress | None = None
        self.bytes_sent = 0
        self.bytes_by_peer: dict[str, int] = {}
        self.messages_by_peer: dict[str, int] = {}
        self._began: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        #: phase -> (when its count of done units last moved, that count), for the rate
        self._stepped: dict[str, tuple[float, int]] = {}
        self._first_step: dict[str, tuple[float, int]] = {}
        #: phase -> its total units of work when last reported (a done phase shows total/total)
        self._totals: dict[str, int] = {}
        self._logged_quarter = 0

    def update(self, tick: Tick) -> None:
        state = tick.state
        now = self.clock()
        self._timestamps(state, now)
        if state.phase in PHASES and state.phase != self.phase:
            at = PHASES.index(state.phase)
            for earlier in PHASES[:at]:
                self._began.setdefault(earlier, now)
                self._ended.setdefault(earlier, now)
            self._began.setdefault(state.phase, now)
            if self.phase in PHASES:
                log.info(
                    "%sphase %s: done in %s; now %s",
                    f"{self.name}: " if self.name else "",
                    self.phase,
                    duration(self.elapsed(self.phase)),
                    state.phase,
                )
            self.phase = state.phase
            self._logged_quarter = 0
        elif state.phase == "done":
            for phase in PHASES:
                self._began.setdefault(phase, now)
                self._ended.setdefault(phase, now)
            self.phase = "done"
            self._logged_quarter = 0
        previous = self.state
        self.state = state
        if state.phase in PHASES:
            self._totals[state.phase] = state.total
            moved = previous is None or previous.phase != state.phase or previous.done != state.done
            if state.done > 0 and moved:
                self._stepped[state.phase] = (now, state.done)
                self._first_step.setdefault(state.phase, (now, state.done))
        self.bytes_sent = tick.bytes_sent
        self.bytes_by_peer = dict(tick.bytes_by_peer)
        self.messages_by_peer = dict(tick.messages_by_peer)
        quarter = int(state.fraction * 4)
        if self.phase == "decrypting" and 0 < quarter < 4 and quarter > self._logged_quarter:
            self._logged_quarter = quarter
            log.info(
                "%s%s, about %s left in this phase",
                f"{self.name}: " if self.name else "",
                state.detail,
                duration(self.phase_eta("decrypting")),
            )

    def _timestamps(self, state: PhaseProgress, now: float) -> None:
        """Phase times from the session's own record (precise even for phases shorter than
        the time between two ticks): a phase ends when the next one begins."""
        if not state.began:
            return
        offset = now - self.session_clock() if self.clock is not self.session_clock else 0.0
        began = [(phase, at + offset) for phase, at in state.began]
        if state.phase in PHASES:  # phases the session entered but does not report yet
            reported = PHASES[: PHASES.index(state.phase) + 1]
            began = [(phase, at) for phase, at in began if phase in reported]
            if not began:
                return
        for (phase, at), following in zip(began, [*began[1:], None], strict=True):
            if phase not in PHASES and phase != "done":
                continue
            if phase in PHASES:
                self._began.setdefault(phase, at)
            if following is not None and phase in PHASES:
                self._ended.setdefault(phase, following[1])
        if began[-1][0] == "done":
            for phase in PHASES:  # a run that resumed past phases never began them here
                self._began.setdefault(phase, began[-1][1])
                self._ended.setdefault(phase, began[-1][1])

    # ------------------------------------------------------------------ figures

    def elapsed(self, phase: str) -> float:
        began = self._began.get(phase)
        if began is None:
            return 0.0
        return self._ended.get(phase, self.clock()) - began

    def phase_state(self, phase: str) -> str:
        if phase in self._ended:
            return "done"
        return "running" if phase in self._began else "pending"

    def phase_fraction(self, phase: str) -> float:
        state = self.phase_state(phase)
        if state == "done":
            return 1.0
        if state == "running" and self.state is not None and self.state.phase == phase:
            return self.state.fraction
        return 0.0

    def phase_eta(self, phase: str) -> float | None:
        """Seconds left in ``phase`` (0 once done; None when unknown)."""
        state = self.phase_state(phase)
        if state == "done":
            return 0.0
        elapsed = self.elapsed(phase)
        fraction = self.phase_fraction(phase)
        estimate = self.estimates.get(phase)
        if state == "running" and phase in COUNTED and fraction > 0 and elapsed > 0:
            first, last = self._first_step.get(phase), self._stepped.get(phase)
            if first is not None and last is not None and last[1] > first[1]:
                # the rate between the first and the last unit seen done (what came before
                # the first, e.g. packing before the first decryption, is not per unit), less
                # the time already spent on the next unit
                per_unit = (last[0] - first[0]) / (last[1] - first[1])
                left = per_unit * (self._totals.get(phase, 0) - last[1])
                return max(0.0, left - (self.clock() - last[0]))
            if estimate is None:
                return elapsed * (1 - fraction) / fraction
        if estimate is None:
            return None
        return max(0.0, estimate - elapsed)

    def eta(self) -> float | None:
        """Seconds left in the whole run (None when unknown). The final acknowledgements count
        0 until a run has timed them: they wait for peers that are finishing too."""
        total = 0.0
        for phase in PHASES:
            left = self.phase_eta(phase)
            if left is None and phase == "finishing":
                left = 0.0
            if left is None:
                return None
            total += left
        return total

    def fraction(self) -> float:
        """The whole run's fraction done: by time when the phases' durations are known, else
        each phase counts a quarter."""
        if self.phase == "done":
            return 1.0
        spent = sum(self.elapsed(p) for p in PHASES)
        left = self.eta()
        if left is not None and spent + left > 0:
            return spent / (spent + left)
        return sum(self.phase_fraction(p) for p in PHASES) / len(PHASES)

    def durations(self) -> dict[str, float]:
        """Wall seconds per phase so far."""
        return {p: round(self.elapsed(p), 3) for p in PHASES if p in self._began}

    def phases(self) -> list[dict[str, object]]:
        """The four phases for ``/status``."""
        out: list[dict[str, object]] = []
        for phase in PHASES:
            running = self.state is not None and self.state.phase == phase
            done, total = (self.state.done, self.state.total) if running and self.state else (0, 0)
            if self.phase_state(phase) == "done" and not running:
                done = total = self._totals.get(phase, 1)
            out.append(
                {
                    "name": phase,
                    "state": self.phase_state(phase),
                    "done": done,
                    "total": total,
                    "fraction": round(self.phase_fraction(phase), 4),
                    "elapsed_seconds": round(self.elapsed(phase), 3),
                    "eta_seconds": _round(self.phase_eta(phase)),
                }
            )
        return out

    def line(self) -> str:
        """One status line: ``alice: decrypting 13/31 ciphertexts (42%), about 18 s left``."""
        head = f"{self.name}: " if self.name else ""
        if self.state is None:
            return f"{head}starting"
        left = self.eta()
        phase_left = self.phase_eta(self.phase) if self.phase in PHASES else None
        parts = [f"{head}{self.state.detail} ({self.fraction():.0%} of the run)"]
        if phase_left is not None and self.phase in COUNTED:
            parts.append(f"{duration(phase_left)} left in this phase")
        if left is not None:
            parts.append(f"about {duration(left)} left")
        return ", ".join(parts)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
