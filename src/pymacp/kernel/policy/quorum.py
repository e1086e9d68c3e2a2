"""The approval bar of a Quorum session: what a bound policy threshold makes of it.

This is the newest reading of the Quorum ``threshold`` rule (runtime 0.9.0, "S4"): a
bound threshold *replaces* ``ApprovalRequest.required_approvals`` as given, even when it
lies above the number of declared participants. Such a bar cannot be reached, so the
positive outcome is out of reach and a negative Commitment is eligible at once.

- no threshold, or a value of zero, NaN or below  -> ``required_approvals`` stands
- ``n_of_m`` (alias ``count``)                     -> ``max(1, ceil(value))``
- ``percentage``                                   -> ``max(1, ceil(value * n / 100))``, exactly
- ``percentage`` with no participants, any other type -> unsatisfiable (``None``)

Bars are capped at ``U32_MAX``, the width of the wire field. Percentages are computed
with exact rational arithmetic: a float product is one approval too high for some pairs
(28% of 25 must give 7, not 8).
"""

from __future__ import annotations

import math
from fractions import Fraction

from .rules import QuorumRules

U32_MAX = 2**32 - 1
COUNT_TYPES = frozenset({"n_of_m", "count"})
PERCENTAGE = "percentage"


def effective_threshold(rules: QuorumRules, required_approvals: int, participants: int) -> int | None:
    """The number of approvals a positive outcome needs; None when no count can satisfy it."""
    value = rules.threshold_value
    if not math.isfinite(value) or value <= 0:
        return required_approvals
    if rules.threshold_type in COUNT_TYPES:
        return _cap(max(1, math.ceil(value)))
    if rules.threshold_type == PERCENTAGE:
        if participants <= 0:
            return None
        # Fraction(float) is the float's exact value, so integers stay integers and the
        # ceiling never suffers a rounding error.
        return _cap(max(1, math.ceil(Fraction(value) * participants / 100)))
    return None


def _cap(bar: int) -> int:
    return min(bar, U32_MAX)
