"""Cloud Storage's JSON API, the subset ``google-cloud-storage`` uses for Vertex AI batch
prediction: object upload (multipart, media, and resumable in chunks), download (``alt=media``),
metadata, and listing by prefix. Reached through ``STORAGE_EMULATOR_HOST`` = ``<emulator>/gcs``.

Every call needs a bearer token the emulated Vertex AI token endpoint issued (401 otherwise, as
Google answers), except a resumable session's own URL, which is its credential. Buckets must exist
(``GcsService.buckets``; ``DEFAULT_BUCKET`` always does): 404 otherwise, as for a missing object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .batches import rand_id
from .gemini_records import rfc3339
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

PREFIX = "/gcs"
DEFAULT_BUCKET = "afbatch-emulator"
OBJECT = r"/b/(?P<bucket>[^/]+)/o/(?P<name>[^/]+)"


def fail(status: int, message: str, reason: str = "invalid") -> Reject:
    detail = {"message": message, "domain": "global", "reason": reason}
    body = {"error": {"code": status, "message": message, "errors": [detail]}}
    return Reject(json_response(body, status))


def _crc32c(data: bytes) -> bytes:
    try:
        import google_crc32c  # installed with google-cloud-storage

        return bytes(google_crc32c.Checksum(data).digest())  # type: ignore[no-untyped-call]
    except ImportError:  # the Castagnoli polynomial, bit by bit: slow, small test objects only
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


@dataclass
class GcsObject:
    bucket: str
    name: str
    data: bytes
    content_type: str
    generation: int = field(default_factory=lambda: time.time_ns() // 1000)
    created: float = field(default_factory=time.time)

    def hashes(self) -> tuple[str, str]:
        md5 = base64.b64encode(hashlib.md5(self.data).digest()).decode()
        return md5, base64.b64encode(_crc32c(self.data)).decode()

    def to_json(self) -> dict[str, Any]:
        md5, crc = self.hashes()
        return {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": self.content_type,
            "size": str(len(self.data)),
            "md5Hash": md5,
            "crc32c": crc,
            "timeCreated": rfc3339(self.created),
            "updated": rfc3339(self.created),
        }


@dataclass
class Session:
    bucket: str
    name: str
    content_type: str
    total: int | None
    data: bytearray = field(default_factory=bytearray)


class GcsService:
    name = "gcs"

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.buckets: set[str] = {DEFAULT_BUCKET}
        self.objects: dict[tuple[str, str], GcsObject] = {}
        self.sessions: dict[str, Session] = {}

    def routes(self) -> list[Route]:
        up = PREFIX + r"/upload/storage/v1/b/(?P<bucket>[^/]+)/o"
        return [
            ("POST", up, self.upload),
            ("PUT", up, self.chunk),
            ("GET", PREFIX + r"/download/storage/v1" + OBJECT, self.download),
            ("GET", PREFIX + r"/storage/v1" + OBJECT, self.get),
            ("GET", PREFIX + r"/storage/v1/b/(?P<bucket>[^/]+)/o", self.list),
            ("GET", PREFIX + r"/storage/v1/b/(?P<bucket>[^/]+)", self.get_bucket),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        if "upload_id" in req.query:  # a resumable session's URL is its own credential
            return None
        return self.emu.vertex.check_token(req)

    def headers(self) -> dict[str, str]:
        return {"x-guploader-uploadid": rand_id("", 24)}

    # ---------------------------------------------------------------- objects

    def put(self, bucket: str, name: str, data: bytes, content_type: str) -> GcsObject:
        """Store an object (a job's predictions, or a test's own file)."""
        with self.emu.lock:
            obj = GcsObject(bucket, name, data, content_type)
            self.objects[(bucket, name)] = obj
            return obj

    def read(self, bucket: str, name: str) -> GcsObject | None:
        with self.emu.lock:
            return self.objects.get((bucket, name))

    def _bucket(self, bucket: str) -> None:
        if bucket not in self.buckets:
            raise fail(404, "The specified bucket does not exist.", "notFound")

    def _object(self, bucket: str, name: str) -> GcsObject:
        self._bucket(bucket)
        obj = self.objects.get((bucket, name))
        if obj is None:
            raise fail(404, f"No such object: {bucket}/{name}", "notFound")
        return obj

    def upload(self, req: Request, bucket: str) -> Response:
        kind = req.query.get("uploadType")
        with self.emu.lock:
            self._bucket(bucket)
            if kind == "media":
                name = req.query.get("name") or ""
                ctype = req.headers.get("content-type", "application/octet-stream")
                return self._store(bucket, name, req.body, ctype)
            if kind == "multipart":
                meta, data = _multipart(req)
                ctype = meta.get("contentType") or "application/octet-stream"
                return self._store(bucket, str(meta.get("name") or ""), data, ctype)
            if kind != "resumable":
                raise fail(400, f"Unsupported uploadType {kind!r}.")
            try:
                meta = json.loads(req.body or b"{}")
            except ValueError:
                raise fail(400, "Invalid JSON in the upload's metadata.") from None
            name = str(meta.get("name") or req.query.get("name") or "")
            if not name:
                raise fail(400, "Required: the object's name.", "required")
            total = req.headers.get("x-upload-content-length")
            ctype = req.headers.get("x-upload-content-type") or "application/octet-stream"
            upload_id = rand_id("", 32)
            size = int(total) if total and total.isdigit() else None
            self.sessions[upload_id] = Session(bucket, name, ctype, size)
        url = (
            f"{req.base_url}{PREFIX}/upload/storage/v1/b/{quote(bucket)}/o"
            f"?uploadType=resumable&upload_id={upload_id}"
        )
        return Response(200, b"", headers={"location": url})

    def _store(self, bucket: str, name: str, data: bytes, ctype: str) -> Response:
        if not name:
            raise fail(400, "Required: the object's name.", "required")
        return json_response(self.put(bucket, name, data, ctype).to_json())

    def chunk(self, req: Request, bucket: str) -> Response:
        """One PUT of a resumable session: `Content-Range: bytes a-b/total` (or `*/total`, a status
        query); 308 with the bytes received until the last one, then the object."""
        upload_id = req.query.get("upload_id", "")
        with self.emu.lock:
            s = self.sessions.get(upload_id)
            if s is None:
                raise fail(404, f"No upload session {upload_id}.", "notFound")
            crange = req.headers.get("content-range", "")
            m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", crange)
            if m is None:
                raise fail(400, f"Invalid Content-Range {crange!r}.")
            if m.group(3) != "*":
                s.total = int(m.group(3))
            if m.group(1) is not None:
                start, end = int(m.group(1)), int(m.group(2))
                if start != len(s.data) or end - start + 1 != len(req.body):
                    raise fail(
                        400, f"Content-Range {crange!r} does not follow {len(s.data)} bytes."
                    )
                s.data += req.body
            if s.total is not None and len(s.data) > s.total:
                del self.sessions[upload_id]
                raise fail(400, f"Received {len(s.data)} bytes, more than the {s.total} declared.")
            if s.total is None or len(s.data) < s.total:
                got = {"range": f"bytes=0-{len(s.data) - 1}"} if s.data else {}
                return Response(308, b"", headers=got)
            del self.sessions[upload_id]
            return json_response(
                self.put(s.bucket, s.name, bytes(s.data), s.content_type).to_json()
            )

    def download(self, req: Request, bucket: str, name: str) -> Response:
        with self.emu.lock:
            obj = self._object(bucket, name)
            md5, crc = obj.hashes()
            headers = {"x-goog-hash": f"crc32c={crc},md5={md5}"}
            headers["x-goog-generation"] = str(obj.generation)
            return Response(200, obj.data, obj.content_type, headers)

    def get(self, req: Request, bucket: str, name: str) -> Response:
        if req.query.get("alt") == "media":
            return self.download(req, bucket, name)
        with self.emu.lock:
            return json_response(self._object(bucket, name).to_json())

    def get_bucket(self, req: Request, bucket: str) -> Response:
        with self.emu.lock:
            self._bucket(bucket)
        return json_response(
            {"kind": "storage#bucket", "id": bucket, "name": bucket, "location": "US-CENTRAL1"}
        )

    def list(self, req: Request, bucket: str) -> Response:
        prefix = req.query.get("prefix", "")
        size = int(req.query.get("maxResults") or 1000)
        start = int(req.query.get("pageToken") or 0)
        with self.emu.lock:
            self._bucket(bucket)
            names = sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))
            page = [self.objects[(bucket, n)].to_json() for n in names[start : start + size]]
        out: dict[str, Any] = {"kind": "storage#objects", "items": page}
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        return json_response(out)


def _multipart(req: Request) -> tuple[dict[str, Any], bytes]:
    """The metadata and media parts of a `multipart/related` upload."""
    m = re.search(r'boundary="?([^";]+)"?', req.headers.get("content-type", ""))
    if m is None:
        raise fail(400, "A multipart upload needs a boundary.")
    parts = req.body.split(b"--" + m.group(1).encode())
    if len(parts) < 4:
        raise fail(400, "A multipart upload has a metadata part and a media part.")
    bodies = [p.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for p in parts[1:3]]
    try:
        meta = json.loads(bodies[0])
    except ValueError:
        raise fail(400, "Invalid JSON in the upload's metadata.") from None
    return meta, bodies[1]
