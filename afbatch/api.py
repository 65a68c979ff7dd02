"""The Python API, for notebooks: a stored run's tables as pandas DataFrames, and a job's estimate.

    import afbatch
    run = afbatch.open_run("sample-1a2b3c4d5e", store="manifests")  # or "s3://bucket/prefix"
    run.summary()           # the report's summary table; .gaps(), .conversations(), .status()
    est = afbatch.estimate("jobs/sample.toml")
    est.frame()             # a row per model (per condition with by="condition") and judge stage

The tables are the report's own (`results.conversation_table`, `report.summarize`,
`report.compliance_gaps`). Failures raise afbatch's typed errors (`afbatch.errors`); nothing is
printed. Heavy modules (pandas, the provider SDKs) are imported on first use, so `import afbatch`
stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from afbatch.job_estimate import Estimate
    from afbatch.runner import Run, Status
    from afbatch.store import Store


def _store(store: Any) -> Store:
    """A folder path, an `s3://bucket/prefix` URL, or a Store as is; None: $AFBATCH_STORE, else
    `manifests` (as the CLI's --store)."""
    from afbatch.store import open_store

    if store is None or isinstance(store, (str, os.PathLike)):
        return open_store(os.fspath(store) if store is not None else None)
    if callable(getattr(store, "read_versioned", None)) and hasattr(store, "url"):
        return store  # type: ignore[no-any-return]
    raise TypeError(
        f"store must be a folder path, an s3:// URL or a Store, not {type(store).__name__}"
    )


class RunTables:
    """One stored run, read as the report reads it. Each call reads the manifest; the
    conversation table is derived again only when the manifest changed since the last call."""

    def __init__(self, run: Run):
        self.run = run
        self._conv: tuple[str, pd.DataFrame] | None = None  # (manifest version, table)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def protocol(self) -> dict[str, object]:
        """The protocol profile its numbers follow, as report.json states it (`run.protocol`)."""
        from afbatch.protocol import PROFILES, protocol_record

        return protocol_record(PROFILES[self.run.job.protocol.profile])

    def __repr__(self) -> str:
        return f"<afbatch run {self.run.run_id} in {self.run.store.url}>"

    def _table(self) -> pd.DataFrame:
        from afbatch import manifest as mf
        from afbatch.results import conversation_table

        m, version = mf.load(self.run.store, self.run.run_id)
        if self._conv is None or self._conv[0] != version:
            self._conv = (version, conversation_table(self.run, m))
        return self._conv[1]

    def conversations(self) -> pd.DataFrame:
        """One row per conversation: the report's conversations.csv (a copy: change it freely),
        with the nullable dtypes of its conversations.parquet (a missing verdict is <NA>)."""
        from afbatch.report.frames import typed

        return typed(self._table().copy())

    def summary(self) -> pd.DataFrame:
        """Compliance, refusal and alignment-faking rates per model × variant × tier
        (summary.csv)."""
        from afbatch.report import summarize

        return summarize(self._table())

    def partial(self) -> pd.DataFrame:
        """Shares full / partial / refusal and AF within full and partial compliance per cell
        (partial.csv); empty for a run without a partial-compliance stage."""
        from afbatch.report import partial_compliance

        return partial_compliance(self._table())

    def gaps(self, gap_interval: str | None = None) -> pd.DataFrame:
        """The compliance gap, training − unmonitored, with its 95% CI per model × variant
        (gaps.csv); `gap_interval` "paired" or "unpaired" (default: the job's `[report]`)."""
        from afbatch.report import compliance_gaps

        method = gap_interval or self.run.job.report.gap_interval
        return compliance_gaps(self._table(), gap_interval=method)

    def status(self) -> Status:
        """Progress per model and stage, shards by state, spend (what `afbatch status` shows)."""
        return self.run.status()


def open_run(
    run_id: str, store: str | os.PathLike[str] | Store | None = None, *, prices: str | None = None
) -> RunTables:
    """A stored run by its id. `store`: a folder, an `s3://bucket/prefix` URL or a Store (default:
    $AFBATCH_STORE, else `manifests`); `prices`: a price override file, as `--prices`.
    An unknown run raises RunError; a damaged store StoreError or DamagedStoreError."""
    from afbatch.runner import Run

    return RunTables(Run.open(_store(store), run_id, prices_file=prices))


def estimate(
    job: str | os.PathLike[str],
    *,
    by: str = "model",
    prices: str | None = None,
    offline: bool = False,
    calibrate_from: str | None = None,
    store: str | os.PathLike[str] | Store | None = None,
) -> Estimate:
    """What `afbatch estimate JOB` computes, offline and without a key: an Estimate whose `frame()`
    is its rows as a DataFrame (`totals()`, `notes`, `as_json()` for the rest). `by`: "model" or
    "condition"; `calibrate_from`: a finished run's id in `store`, whose observed lengths, turns and
    compliance replace the job's assumptions. A bad job raises SpecError, a missing input
    InputError (or OfflineError with `offline=True`)."""
    from afbatch.errors import InputError
    from afbatch.job_estimate import estimate_job
    from afbatch.pricing import load_prices
    from afbatch.spec import load_job

    if by not in ("model", "condition"):
        raise InputError(f"estimate: by must be 'model' or 'condition', not {by!r}")
    loaded = load_job(job)
    calibration = None
    if calibrate_from:
        from afbatch.results import calibration as observed

        calibration = observed(open_run(calibrate_from, store).run)
    job_prices = loaded.resolve(loaded.job.prices) if loaded.job.prices else None
    return estimate_job(
        loaded, load_prices(prices or job_prices), by=by, offline=offline, calibration=calibration
    )
