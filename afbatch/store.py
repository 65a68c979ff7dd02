"""Where a run lives: a local folder or `s3://bucket/prefix`, behind one Store protocol.

Objects are either immutable (shards, results: written once under content-derived keys) or the
run's manifest, which changes only by compare-and-swap:
  - local: temp file + fsync + os.replace, under an exclusive lock; the version is the sha256
  - S3: conditional puts, `If-None-Match: *` to create and `If-Match: <ETag>` to replace
A lost race raises ConflictError; the caller reloads and retries.
Every write passes through `redact_bytes`: no secret value this process knows is ever stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from afbatch.errors import ConflictError, StoreError, os_error_message
from afbatch.redact import redact, redact_bytes, redact_file, register_aws

DEFAULT_STORE = "manifests"


class Store(Protocol):
    url: str

    def read(self, key: str) -> bytes:
        """The object's bytes; KeyError when absent."""
        ...

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """(bytes, version) or None when absent."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Unconditional write, for immutable objects."""
        ...

    def create(self, key: str, data: bytes) -> str:
        """Write only if absent; returns the version; ConflictError if it exists."""
        ...

    def replace(self, key: str, data: bytes, version: str) -> str:
        """Write only if the current version matches; returns the new version; ConflictError
        otherwise."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under a prefix (recursively)."""
        ...

    def download(self, key: str, path: str) -> None:
        """Copy an object to a local file (providers upload from files)."""
        ...

    def put_file(self, key: str, path: str) -> None:
        """Store a local file under `key` (moved into a local store; uploaded to S3). The file is
        consumed."""
        ...

    def lines(self, key: str) -> Iterator[bytes]:
        """The object's lines, streamed (results of big runs never sit in memory twice)."""
        ...


def open_store(url: str | None = None) -> Store:
    """`--store` / $AFBATCH_STORE: a folder (default `manifests/`) or s3://bucket/prefix."""
    url = url or os.environ.get("AFBATCH_STORE") or DEFAULT_STORE
    if url.startswith("s3://"):
        return S3Store(url)
    return LocalStore(url)


class LocalStore:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents and p != self.root:
            raise StoreError(f"store key {key!r} escapes {self.root}")
        return p

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as e:
            raise StoreError(f"{self._path(key)}: cannot read: {e.strerror}") from None

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.read(key)
        except KeyError:
            return None
        return data, _sha(data)

    def write(self, key: str, data: bytes) -> None:
        self._write(key, redact_bytes(data))

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _os_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        path = self._path(key)
        with _os_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(path.parent / f".{path.name}.lock", "a+")  # noqa: SIM115 - closed below
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def create(self, key: str, data: bytes) -> str:
        data = redact_bytes(data)  # before hashing: the version is the hash of what is stored
        with self._locked(key):
            if self._path(key).exists():
                raise ConflictError(f"{key} already exists")
            self._write(key, data)
        return _sha(data)

    def replace(self, key: str, data: bytes, version: str) -> str:
        data = redact_bytes(data)
        with self._locked(key):
            current = self.read_versioned(key)
            if current is None or current[1] != version:
                raise ConflictError(f"{key} changed since it was read")
            self._write(key, data)
        return _sha(data)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`, as on S3 (a prefix need not end at a folder)."""
        self._path(prefix) if prefix else None  # refuses prefixes escaping the root
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder else self.root
        if not base.exists():
            return
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(".") and (name.endswith(".lock") or name.startswith(".tmp-")):
                    continue
                key = str(Path(dirpath, name).relative_to(self.root))
                if key.startswith(prefix):
                    yield key

    def download(self, key: str, path: str) -> None:
        Path(path).write_bytes(self.read(key))

    def put_file(self, key: str, path: str) -> None:
        dest = self._path(key)
        with _os_errors(dest):
            self._put_file(dest, path)

    def _put_file(self, dest: Path, path: str) -> None:
        redact_file(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o666 & ~_UMASK)
        _fsync_file(path)
        try:
            os.replace(path, dest)
        except OSError:  # another filesystem: copied in pieces beside the destination, then renamed
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                os.fchmod(fd, 0o666 & ~_UMASK)
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.unlink(path)

    def lines(self, key: str) -> Iterator[bytes]:
        try:
            with open(self._path(key), "rb") as f:
                yield from f
        except FileNotFoundError:
            raise KeyError(key) from None

    def local_path(self, key: str) -> str:
        return str(self._path(key))


class S3Store:
    def __init__(self, url: str):
        self.url = url.rstrip("/")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise StoreError(f"{url}: expected s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            session = boto3.Session()
            register_aws(session.get_credentials())
            self._client = session.client("s3")  # honours AWS_ENDPOINT_URL_S3 and the usual chain
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> bytes:
        got = self.read_versioned(key)
        if got is None:
            raise KeyError(key)
        return got[0]

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return obj["Body"].read(), obj["ETag"]
        except Exception as e:  # noqa: BLE001 - classified below
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise self._error("read", key, e) from None

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=redact_bytes(data))
        except Exception as e:  # noqa: BLE001
            raise self._error("write", key, e) from None

    def create(self, key: str, data: bytes) -> str:
        try:
            etag: str = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=redact_bytes(data), IfNoneMatch="*"
            )["ETag"]
            return etag
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise ConflictError(f"{key} already exists") from None
            raise self._error("create", key, e) from None

    def replace(self, key: str, data: bytes, version: str) -> str:
        try:
            etag: str = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=redact_bytes(data), IfMatch=version
            )["ETag"]
            return etag
        except Exception as e:  # noqa: BLE001
            if _code(e) in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
                "412",
                "409",
                "NoSuchKey",
            ):
                raise ConflictError(f"{key} changed since it was read") from None
            raise self._error("replace", key, e) from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                self._check_bucket(key)
                return False
            raise self._error("check", key, e) from None

    def _check_bucket(self, key: str) -> None:
        """A HEAD on a missing bucket is a bare 404 too: tell the two apart."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(
                    f"s3://{self.bucket}/{self._key(key)}: no such bucket "
                    f"{self.bucket!r} — create it or fix --store"
                ) from None
            raise self._error("check bucket", "", e) from None

    def list(self, prefix: str) -> Iterator[str]:
        start = self._key(prefix)
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            ):
                for obj in page.get("Contents", []):
                    yield obj["Key"][cut:]
        except Exception as e:  # noqa: BLE001
            raise self._error("list", prefix, e) from None

    def download(self, key: str, path: str) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), path)
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise self._error("download", key, e) from None

    def put_file(self, key: str, path: str) -> None:
        redact_file(path)
        try:
            self.client.upload_file(path, self.bucket, self._key(key))  # multipart for big files
        except Exception as e:  # noqa: BLE001
            raise self._error("upload", key, e) from None
        os.unlink(path)

    def lines(self, key: str) -> Iterator[bytes]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            raise self._error("read", key, e) from None
        for line in obj["Body"].iter_lines(chunk_size=1 << 20):
            yield line + b"\n"

    def _error(self, what: str, key: str, e: Exception) -> StoreError:
        return StoreError(
            redact(
                f"s3://{self.bucket}/{self._key(key)}: cannot {what}: "
                f"{_code(e) or type(e).__name__}: {_message(e)}"
            )
        )


@contextmanager
def _os_errors(path: Path) -> Iterator[None]:
    """A file-system error on the store (disk full, permissions, a file in the way): one line."""
    try:
        yield
    except OSError as e:
        raise StoreError(os_error_message(e, path if e.filename is None else None)) from None


def _code(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def _message(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str(resp.get("Error", {}).get("Message") or e)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, os.replace: readers see the old or the new bytes, never
    half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a store may be shared like any folder
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
