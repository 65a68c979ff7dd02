"""The --max-cost check of an estimate: refused below the expected cost, a paced hard cap below
the worst case."""

from __future__ import annotations

from afbatch.cost_table import Estimate
from afbatch.errors import BudgetError


def check_budget(est: Estimate, max_cost: float | None) -> str | None:
    """Refuse a cap below the expected cost; a cap below the worst case is a hard cap the run is
    paced to (returns the line saying so), since the worst case is 10-25x the expected cost."""
    if max_cost is None:
        return None
    t = est.totals()
    expected, worst = t["cost_batch_cached_usd"], t["cost_worst_usd"]
    if expected > max_cost:
        raise BudgetError(
            f"expected cost ${expected:,.2f} exceeds --max-cost ${max_cost:,.2f} — raise the "
            "limit, lower max_tokens/max_turns/samples, or drop models"
        )
    if worst > max_cost:
        return (
            f"the worst case ${worst:,.2f} exceeds --max-cost ${max_cost:,.2f}: the run is "
            "paced so that spend never passes it, and stops (exit 3, resumable with a higher "
            "--max-cost) if the real cost would"
        )
    return None
