"""What the live panel says: the rolling FDIN estimate made to hold still, and the appearance model's
beside it (kept apart from :mod:`fdin.app.live`, which tracks and buffers frames).

* :class:`Steady`: the shown FDIN estimate is the median of the last :data:`SMOOTH_REFRESHES` rolling
  estimates (each over 4 s of face, about once a second: together about the 10 s the "analyse" button
  uses), and its label changes only when :data:`HOLD_REFRESHES` refreshes in a row call for the same
  new one (hysteresis), so one noisy window never flips it. It reads "uncertain" before
  :data:`MIN_REFRESHES` refreshes, when the median sits inside the band (:func:`fdin.labels.gender_call`),
  and when the refreshes contradict each other (:data:`CONTRADICTING` or more on each side).
* the appearance model (trained on real faces) runs on the current frame once per refresh; its last
  :data:`SMOOTH_REFRESHES` estimates are averaged the same way.
* region pairs are named only when removing them moves the estimate beyond the no-signal noise
  (:func:`fdin.app.rendering.relation_sentence`, from the per-estimate attribution).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SMOOTH_REFRESHES = 7                 # the shown estimate: the median of the last 7 refreshes (~10 s) ...
HOLD_REFRESHES = 3                   # ... and its label changes only after 3 refreshes agree on the new one
MIN_REFRESHES = 3                    # no label before 3 refreshes
#: refreshes on each side of the band (>= 0.75 and <= 0.25) at which the window contradicts itself:
#: "uncertain". One odd refresh is absorbed by the median; two or more on each side are not.
CONTRADICTING = 2


@dataclass
class Steady:
    """The estimate the live panel shows: the median (and spread) of the last :data:`SMOOTH_REFRESHES`
    rolling estimates, with a label that changes only when :data:`HOLD_REFRESHES` refreshes in a row
    call for the same new one (hysteresis: a single noisy window never flips it)."""

    history: deque = field(default_factory=lambda: deque(maxlen=SMOOTH_REFRESHES))  # (p_female, years)
    label: str | None = None
    candidate: str | None = None
    streak: int = 0
    flips: int = 0

    def update(self, p_female: float, years: float) -> None:
        from fdin.labels import GENDER_UNCERTAIN_BAND, gender_call

        self.history.append((float(p_female), float(years)))
        p, _spread = self.gender()
        low, high = GENDER_UNCERTAIN_BAND
        female = sum(h[0] >= high for h in self.history)
        male = sum(h[0] <= low for h in self.history)
        contradicting = min(female, male) >= CONTRADICTING
        call = "uncertain" if len(self.history) < MIN_REFRESHES or contradicting else gender_call(p)
        if self.label is None:
            self.label = call
            return
        if call == self.label:
            self.candidate, self.streak = None, 0
            return
        self.streak = self.streak + 1 if call == self.candidate else 1
        self.candidate = call
        if self.streak >= HOLD_REFRESHES:
            self.label, self.candidate, self.streak = call, None, 0
            self.flips += 1

    def gender(self) -> tuple[float, float]:
        """(median p_female, standard deviation) over the smoothed refreshes: the median, so one odd
        window does not move it; the spread, shown beside it."""
        p = np.asarray([h[0] for h in self.history], np.float64)
        return (float(np.median(p)), float(p.std())) if len(p) else (0.5, 0.0)

    def age(self) -> tuple[float, float]:
        years = np.asarray([h[1] for h in self.history], np.float64)
        return (float(np.median(years)), float(years.std())) if len(years) else (0.0, 0.0)



def _steady_texts(values: list[tuple[float, float]]) -> tuple[str, str]:
    """(gender, age) words for values averaged over refreshes: label or "uncertain", side score and
    how much the refreshes vary."""
    from fdin.app.rendering import age_text, gender_text
    from fdin.results import AgeEstimate, GenderEstimate

    p = np.asarray([v[0] for v in values], np.float64)
    years = np.asarray([v[1] for v in values], np.float64)
    spread = float(p.std()) if len(p) > 1 else None
    gender = gender_text(GenderEstimate(float(np.median(p)), None))
    if spread is not None:
        points = round(100 * spread)
        gender = gender[:-1] + (", steady" if points < 5 else f", varies ±{points} points") + " over the last seconds)"
    age = age_text(AgeEstimate(5 * round(float(np.median(years)) / 5), float(years.std()) if len(years) > 1 else None))
    return gender, age


def rolling_markdown(session: Any, demonstration: bool, *, buffer_s: float, min_rolling_s: float,
                     rolling_every_s: float, window_s: float) -> str:
    """The rolling estimate in words: FDIN's, averaged over the last refreshes with a label that holds
    still (:class:`Steady`), and the appearance model's beside it; each with how much it varies."""
    from fdin.app.rendering import relation_sentence
    from fdin.labels import SYNTHETIC_WEIGHTS_NOTE

    r = session.rolling_result
    stats = session.stats()
    head = (f"Tracking: face in {sum(f is not None for f in session.faces)} of the {len(session.faces)} "
            f"frames of the last {buffer_s:g} s ({stats['median_frame_ms']:.0f} ms per frame).")
    if r is None:
        return head + f"\n\nThe rolling estimate needs the face in view for {min_rolling_s:g} s."
    label = "FDIN demonstration output" if demonstration else "FDIN estimate"
    age = (session.times[-1] - r.at) if session.times else 0.0
    refreshes = len(session.steady.history)
    rows = ["| | apparent gender | apparent age |", "|---|---|---|"]
    if session.appearance:
        g, a = _steady_texts(list(session.appearance))
        rows.append(f"| appearance model (real faces) | {g} | {a} |")
    if refreshes:
        g, a = _steady_texts(list(session.steady.history))
        shown = session.steady.label or "uncertain"
        g = f"{shown} " + g[g.index("("):]  # the held label (hysteresis), with the current mean score
        if session.steady.candidate:
            g += f"; may change to {session.steady.candidate} if that holds"
        rows.append(f"| {label} | {g} | {a} |")
    lines = [head, f"**Rolling estimate** over the last {refreshes} refresh{'es' if refreshes != 1 else ''} "
                   f"(each {window_s:g} s of face, about once a second; a label changes only when "
                   f"{HOLD_REFRESHES} refreshes in a row call for it):", "\n".join(rows)]
    if age >= 2 * rolling_every_s:
        lines.append(f"(Not refreshed for {age:.0f} s: the face was in view for less than {min_rolling_s:g} s of "
                     f"the last {window_s:g} s.)")
    sentence = relation_sentence(r.prediction.attribution, "gender", k=3)
    if sentence:
        lines.append(sentence)
    if demonstration:
        lines.append(f"*{SYNTHETIC_WEIGHTS_NOTE}*")
    return "\n\n".join(lines)


__all__ = ["CONTRADICTING", "HOLD_REFRESHES", "MIN_REFRESHES", "SMOOTH_REFRESHES", "Steady", "rolling_markdown"]
