"""Option types and options shared by several commands."""

from __future__ import annotations

import math
from typing import Any

import click

from afbatch.emulator_store import EMULATOR_STORE, emulated


class Finite(click.FloatRange):
    """A float range that also refuses nan and inf (which pass click's comparisons)."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        rv: float = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class Budget(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on, not in 8.1
    """USD for --max-cost: finite and above zero (NaN would switch the guard off, inf is no cap)."""

    name = "USD"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            usd = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of USD", param, ctx)
        if not math.isfinite(usd) or usd <= 0:
            self.fail(f"{value!r} is not a budget: give a finite amount of USD above 0", param, ctx)
        return usd


SECONDS = Finite(min=0, max=3600)
BUDGET = Budget()
SHARE = click.FloatRange(0, 1, min_open=True, max_open=True)  # strictly between 0 and 1

offline_option = click.option(
    "--offline", is_flag=True, help="Never download: fail, naming the missing file."
)
prices_option = click.option(
    "--prices",
    "prices_file",
    type=click.Path(dir_okay=False),
    help="Price override file (default: $AFBATCH_PRICES or ~/.config/afbatch/prices.toml).",
)


def _store_default(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """With the emulator's exports (`afbatch emulate`) in the shell, its store is the default."""
    given = ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.COMMANDLINE
    return value if given or not emulated() else EMULATOR_STORE


store_option = click.option(
    "--store",
    "store_url",
    envvar="AFBATCH_STORE",
    default="manifests",
    show_default=True,
    callback=_store_default,
    help=f"A folder or s3://bucket/prefix (env AFBATCH_STORE; {EMULATOR_STORE} with --emulator).",
)
max_cost_option = click.option(
    "--max-cost",
    type=BUDGET,
    help="Never bill more than this many USD: refuse (exit 3) when the expected cost is higher, "
    "pace the run when the worst case is, stop (exit 3) at the cap.",
)
