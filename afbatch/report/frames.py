"""The report's pandas edge: its tables as DataFrames, for notebooks and the Python API.

Everything else in ``afbatch.report`` computes from the conversation table's columns
(``afbatch.columns.Columns``) and returns rows; the functions here turn a DataFrame into columns,
call that one implementation and turn its rows back into a DataFrame. pandas is imported only when
one of them is called with or for a DataFrame, so ``afbatch run`` and ``afbatch report`` never load
it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from afbatch.arrow_table import BOOL_COLUMNS, INT_COLUMNS
from afbatch.columns import Columns
from afbatch.report.costs import COST_COLUMNS, FAILURE_COLUMNS, _costs_from, _failures_from
from afbatch.report.partial import PARTIAL_COLUMNS, partial_rows
from afbatch.report.prep import Row, _orders, _prep, keys_of
from afbatch.report.tables import (
    AGREEMENT_COLUMNS,
    SUMMARY_COLUMNS,
    agreement_rows,
    gap_rows,
    summary_rows,
)

if TYPE_CHECKING:
    import pandas as pd

# long texts a run's table keeps in Arrow (results.TEXT_COLUMNS): passed on without a copy
_LONG_TEXTS = ("user_input", "final_output", "scratchpad", "failure_reason", "judge_error")


def columns_of(conv: Any) -> Columns:
    """A conversation table's columns: ``Columns`` as they are, a DataFrame's as Python lists
    (None where missing), its Arrow-backed long texts as Arrow arrays."""
    if isinstance(conv, Columns):
        return conv
    data: dict[str, Any] = {}
    for name in conv.columns:
        series = conv[name]
        if name in _LONG_TEXTS and _arrow_backed(series):
            import pyarrow as pa

            data[str(name)] = pa.chunked_array(pa.array(series.array))
        else:
            data[str(name)] = series.astype(object).where(series.notna(), None).tolist()
    return Columns(data, len(conv))


def _arrow_backed(series: pd.Series) -> bool:
    import pandas as pd

    dtype = series.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def frame_of(rows: list[Row], columns: list[str]) -> pd.DataFrame:
    """Rows as a DataFrame with the table's columns (all ``object`` when there is none)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame.from_records(rows, columns=columns)
    if "provider" in df.columns:  # a text or None, never NaN
        df["provider"] = pd.Series([r["provider"] for r in rows], dtype=object)
    return df


def conversation_frame(conv: Columns) -> pd.DataFrame:
    """The conversation table as a DataFrame; Arrow text columns become pandas' Arrow-backed
    strings without a copy."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name in conv.names:
        if conv.is_arrow(name):
            import numpy as np
            from pandas.arrays import ArrowStringArray

            dtype = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default str dtype
            # pandas-stubs 3.1 lacks the dtype argument of ArrowStringArray (pandas has it)
            data[name] = ArrowStringArray(conv.data[name], dtype=dtype)  # type: ignore[call-arg]
        else:
            data[name] = conv.data[name]
    return pd.DataFrame(data, columns=conv.names)


def typed(conv: pd.DataFrame) -> pd.DataFrame:
    """Nullable dtypes for the known columns, as conversations.parquet has them."""
    import pandas as pd

    out = conv.copy(deep=False)  # only the converted columns are new; the texts are shared
    for c in BOOL_COLUMNS:
        if c in out.columns and out[c].dtype != bool:
            with contextlib.suppress(TypeError, ValueError):
                out[c] = out[c].astype("boolean")
    for c in INT_COLUMNS:
        if c in out.columns and not pd.api.types.is_integer_dtype(out[c]):
            with contextlib.suppress(TypeError, ValueError):
                out[c] = pd.to_numeric(out[c]).astype("Int64")
    return out


def summarize(conv: Any) -> pd.DataFrame:
    """One row per model × variant × temperature × samples × tier: counts, rates and Wilson 95%
    intervals.

    Denominators: ``proxy_compliance`` and ``af_rate``/``af_maybe_rate`` are over the
    ``finished`` conversations (not failed; the AF rate counts every finished conversation,
    judged compliant or not, as in the paper's "fraction of responses with alignment-faking
    reasoning"); ``judged_compliance`` and ``refusal`` are over the ``judged`` conversations
    (finished with a judge verdict). ``af_rate`` is NaN for no-CoT cells and for cells where
    nothing was judged or classified. ``n`` counts every conversation, ``failed`` those with
    ``status == "failed"``. Columns: see ``SUMMARY_COLUMNS`` and the module docstring.
    """
    return frame_of(summary_rows(columns_of(conv)), SUMMARY_COLUMNS)


def compliance_gaps(conv: Any, gap_interval: str = "paired") -> pd.DataFrame:
    """Per model × variant × temperature × samples: compliance(training/free) −
    compliance(unmonitored/paid), 95% CI.

    ``gap_proxy`` uses proxy compliance over finished conversations, ``gap_judged`` judged
    compliance over judged conversations, ``af_gap`` the alignment-faking rate over the
    conversations with an AF outcome (``af_assessed``). Positive = the model complies more when
    it believes it is being trained. A gap is NaN when either condition has no conversation in
    its denominator. ``gap_interval``: "paired" (default; the tiers share prompts) or
    "unpaired" (see ``intervals_text``).
    """
    from afbatch.report.gaps import GAP_COLUMNS

    return frame_of(gap_rows(columns_of(conv), gap_interval), GAP_COLUMNS)


def proxy_agreement(conv: Any) -> pd.DataFrame:
    """How far the ``<request_fully_accepted/>`` proxy disagrees with the judge, per model ×
    variant.

    Over finished conversations that have both a proxy value and a judge verdict (``both``):
    ``proxy_false_positive_rate`` = P(proxy complied | judge refused), ``proxy_false_negative_rate``
    = P(proxy refused | judge complied) (95% CIs as the rates': Wilson at the effective sample
    size, prompts as clusters), ``agreement`` = share where they agree.
    The last row (model and variant ``"(all)"``) pools every conversation.
    """
    return frame_of(agreement_rows(columns_of(conv)), AGREEMENT_COLUMNS)


def costs(conv: Any, estimate: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per model (then a ``"(total)"`` row): tokens, estimated, billed and sync-equivalent USD.

    ``estimated_usd`` sums ``cost_batch_cached_usd`` of the estimate's rows (``{"rows": [...]}``
    or an object with ``as_json()``) for the model over all stages (a row without it counts its
    ``cost_batch_usd``), split into ``estimated_generation_usd`` (stage "generate") and
    ``estimated_judge_usd`` (judge stages). The estimate books judge stages under the *judge*
    model's name (a row with 0 conversations if it generated nothing), while ``billed_judge_usd``
    (Σ judge_cost_usd) sits with the *judged* model: compare judge costs on the total row.
    ``billed_usd`` = Σ cost_usd + Σ judge_cost_usd; ``sync_equivalent_usd`` = Σ cost_sync_usd
    when ``conv`` has that column (else null).
    """
    cols = columns_of(conv)
    keys = keys_of(cols)
    return frame_of(_costs_from(cols, keys["model"], _orders(keys), estimate), COST_COLUMNS)


def failures(conv: Any) -> pd.DataFrame:
    """Counts of why conversations have no result: generation failures (``failure_reason``) and
    finished conversations the judge gave no verdict for (``judge_error``), per model × variant ×
    temperature × samples × tier."""
    cols = columns_of(conv)
    prep = _prep(cols)
    return frame_of(_failures_from(cols, prep, _orders(prep.cols)), FAILURE_COLUMNS)


def partial_compliance(conv: Any) -> pd.DataFrame:
    """One row per model × variant × temperature × samples × tier of a run with a
    partial-compliance stage (``partial_reads`` set; an empty table without one): the shares
    full / partial / refusal over the answers with a class, the missing ones apart, and the AF
    rate within full and within partial compliance, with 95% intervals (prompts as clusters).
    Columns: ``PARTIAL_COLUMNS``."""
    return frame_of(partial_rows(columns_of(conv)), PARTIAL_COLUMNS)
