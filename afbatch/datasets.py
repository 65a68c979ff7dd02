"""Inputs of a job: local files or https URLs, downloaded once into a cache and pinned by sha256.

The cache index records each URL's sha256 at first download; every later use re-hashes the
cached bytes and refuses a file that changed. `offline=True` never touches the network and
names the missing file instead.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from afbatch.errors import InputError, OfflineError, os_error_message
from afbatch.spec import DatasetSpec, LoadedJob, is_url
from afbatch.store import atomic_write


def cache_dir() -> Path:
    root = os.environ.get("AFBATCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "afbatch"
    )
    return Path(root)


@dataclass(frozen=True)
class Source:
    """A resolved input: its bytes, where they came from, and their sha256."""

    ref: str
    data: bytes
    sha256: str

    @property
    def text(self) -> str:
        try:
            return self.data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{self.ref}: not UTF-8 text ({e}) — re-save the file as UTF-8"
            ) from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source(ref: str, *, offline: bool = False, expected_sha256: str | None = None) -> Source:
    """Read a local path or a cached/downloaded URL and check its pin."""
    if is_url(ref):
        data = _cached_url(ref, offline=offline)
    else:
        try:
            data = Path(ref).read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"{ref}: file not found — fix the path (paths are relative to the job file)"
            ) from None
        except OSError as e:  # a folder, no permission, a symlink loop: the path and the fix
            raise InputError(os_error_message(e, ref)) from None
    digest = sha256_bytes(data)
    if expected_sha256 and digest != expected_sha256:
        raise InputError(
            f"{ref}: sha256 is {digest}, the job pins {expected_sha256} — the file changed; "
            "restore it or update the pin in the job"
        )
    return Source(ref=ref, data=data, sha256=digest)


def _index_path() -> Path:
    return cache_dir() / "downloads" / "index.json"


def _load_index() -> dict[str, dict[str, str]]:
    try:
        index: dict[str, dict[str, str]] = json.loads(_index_path().read_text())
        return index
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise InputError(
            f"{_index_path()}: unreadable download index ({e}) — delete it to re-download"
        ) from None


def _cached_url(url: str, *, offline: bool) -> bytes:
    index = _load_index()
    entry = index.get(url)
    if entry:
        path = _index_path().parent / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = None
        if data is not None:
            if sha256_bytes(data) != entry["sha256"]:
                raise InputError(
                    f"{path}: cached copy of {url} no longer matches its recorded sha256 "
                    f"{entry['sha256']} — delete it and rerun to download again"
                )
            return data
    if offline:
        raise OfflineError(
            f"{url} is not in the cache ({_index_path().parent}) and --offline forbids "
            "downloading — run once without --offline, or point the job at a local copy"
        )
    data = _download(url)
    cache_put(url, data)
    return data


def cache_put(url: str, data: bytes) -> str:
    """Make `data` the cached copy of `url` and record its sha256 (returned): a download, or a
    local copy of a published file on a machine without network. Later reads re-check it."""
    if not is_url(url):
        raise InputError(f"{url}: not an http(s) URL — only URLs are cached")
    name = (
        hashlib.sha256(url.encode()).hexdigest()[:16]
        + "-"
        + (url.rstrip("/").rsplit("/", 1)[-1] or "file")[:60]
    )
    folder = _index_path().parent
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / name, data)
    index = _load_index()
    digest = sha256_bytes(data)
    fetched = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    index[url] = {"file": name, "sha256": digest, "fetched_at": fetched}
    atomic_write(_index_path(), json.dumps(index, indent=1, sort_keys=True).encode())
    return digest


def _download(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - https URLs from the job
            body: bytes = resp.read()
            return body
    except urllib.error.HTTPError as e:
        raise InputError(
            f"{url}: download failed: HTTP {e.code} {e.reason} — check the URL"
        ) from None
    except (ValueError, http.client.InvalidURL) as e:  # a bad IPv6 host, spaces, control characters
        raise InputError(f"{url}: not a valid URL ({e}) — fix it in the job") from None
    except http.client.HTTPException as e:  # the server broke the protocol (truncated, garbled)
        raise OfflineError(
            f"{url}: download failed ({type(e).__name__}: {e}) — "
            "retry, or point the job at a local copy"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise OfflineError(
            f"{url}: download failed ({reason}) — check the network, or point the job at a local "
            "copy"
        ) from None


# --- datasets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """The selected rows: (index in the file, request text)."""

    rows: list[tuple[int, str]]
    sha256: str
    ref: str


def load_dataset(
    loaded: LoadedJob, *, offline: bool = False, read: Callable[..., Source] | None = None
) -> Dataset:
    spec = loaded.job.dataset
    ref = loaded.resolve(spec.source)
    src = (read or read_source)(ref, offline=offline, expected_sha256=spec.sha256)
    texts = parse_rows(src, spec)
    return Dataset(rows=select_rows(texts, spec, ref), sha256=src.sha256, ref=ref)


def parse_rows(src: Source, spec: DatasetSpec) -> list[str]:
    fmt = spec.format or (
        "jsonl" if src.ref.split("?")[0].endswith((".jsonl", ".ndjson")) else "csv"
    )
    text = src.text
    out: list[str] = []
    if fmt == "csv":
        out = _csv_rows(src, spec, text)
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(
                    f"{src.ref}:{n}: invalid JSON ({e.msg}) — one JSON object per line"
                ) from None
            except RecursionError:
                raise InputError(
                    f"{src.ref}:{n}: JSON nested too deeply — one flat JSON object per line"
                ) from None
            value = obj.get(spec.column) if isinstance(obj, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise InputError(
                    f"{src.ref}:{n}: no non-empty string {spec.column!r} — set dataset.column"
                )
            out.append(value.strip())
    if not out:
        raise InputError(f"{src.ref}: the dataset has no rows")
    return out


# A request is one cell. Python's csv refuses cells over 128 KiB; allow 1 MiB (more than any
# model's context window), so a bigger cell is almost surely an unclosed quote swallowing rows.
MAX_CELL_CHARS = 1 << 20


def _csv_rows(src: Source, spec: DatasetSpec, text: str) -> list[str]:
    out: list[str] = []
    old_limit = csv.field_size_limit(MAX_CELL_CHARS)
    reader = csv.DictReader(io.StringIO(text))
    done = 0  # the last line of the last record read
    try:
        if not reader.fieldnames or spec.column not in reader.fieldnames:
            cols = ", ".join(reader.fieldnames or []) or "none"
            raise InputError(
                f"{src.ref}: no column {spec.column!r} (columns: {cols}) — set dataset.column"
            )
        done = reader.line_num
        for row in reader:
            n = done = reader.line_num
            value = (row.get(spec.column) or "").strip()
            if not value:
                raise InputError(
                    f"{src.ref}:{n}: empty {spec.column!r} — remove the row or fill it in"
                )
            out.append(value)
    except csv.Error as e:
        start = done + 1  # the record being read starts after the last one read
        if "field larger" in str(e):
            raise InputError(
                f"{src.ref}:{start}: a cell longer than {MAX_CELL_CHARS:,} characters "
                "— look for an unclosed quote on or after this line"
            ) from None
        raise InputError(f"{src.ref}:{start}: not valid CSV ({e}) — fix the quoting") from None
    finally:
        csv.field_size_limit(old_limit)
    return out


def select_rows(texts: list[str], spec: DatasetSpec, ref: str) -> list[tuple[int, str]]:
    indexed = list(enumerate(texts))
    if spec.first is not None:
        if spec.first > len(texts):
            raise InputError(
                f"{ref}: dataset.first = {spec.first} but the file has {len(texts)} rows — lower it"
            )
        return indexed[: spec.first]
    if spec.sample is not None:
        if spec.sample > len(texts):
            raise InputError(
                f"{ref}: dataset.sample = {spec.sample} but the file has "
                f"{len(texts)} rows — lower it"
            )
        picked = sorted(random.Random(spec.seed).sample(range(len(texts)), spec.sample))
        return [indexed[i] for i in picked]
    return indexed
