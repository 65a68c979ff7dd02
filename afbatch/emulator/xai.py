"""xAI's native Batch API under ``/xai/v1`` (the SDK-free REST the xai provider speaks).

A named batch is created empty; requests are added to it (≤ 25 MB a call, ids unique within the
batch, unknown fields refused as the REST gateway does); rows run lazily like the other services'
batches; results come back in pages of ``{batch_request_id, batch_result: {response |
error}}``. The result shape is the one captured from the real API (a 2026 batch of 500 requests);
a failed row's ``error`` follows xai-sdk's proto (``google.rpc.Status``: code, message).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .batches import Job, Outcome, Row, openai_finish_reason, rand_id, run_rows, shuffled, text_of
from .responders import CallContext
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

DAY = 24 * 3600
PREFIX = "/xai/v1"
CHAT_PARAMS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "reasoning_effort",
        "response_format",
        "user",
    }
)
ROLES = ("system", "user", "assistant")
GRPC = {"invalid_request": 3, "rate_limit": 8, "overloaded": 14, "server_error": 13, "auth": 16}


def fail(status: int, message: str) -> Reject:
    code = {
        400: "Client specified an invalid argument",
        401: "Unauthenticated",
        404: "Some requested entity was not found",
        413: "Payload too large",
    }
    return Reject(
        json_response({"code": code.get(status, "Internal error"), "error": message}, status)
    )


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class XAIBatch(Job):
    name: str = ""
    model: str | None = None
    pending: list[Row] = field(default_factory=list)  # added, not run yet
    ids: set[str] = field(default_factory=set)
    results: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(
        default_factory=lambda: {
            "num_requests": 0,
            "num_pending": 0,
            "num_success": 0,
            "num_error": 0,
            "num_cancelled": 0,
        }
    )
    expired: bool = False

    def to_json(self) -> dict[str, Any]:
        expire = self.created - 1 if self.expired else self.created + DAY
        out: dict[str, Any] = {
            "batch_id": self.id,
            "name": self.name,
            "create_time": stamp(self.created),
            "expire_time": stamp(expire),
            "create_api_key_id": "emulator",
            "state": dict(self.counts),
            "cost_breakdown": {"total_cost_usd_ticks": 0},
        }
        if self.cancel_at is not None:
            out["cancel_time"] = stamp(self.cancel_at)
        return out


class XAIService:
    name = "xai"
    MAX_ADD_BYTES = 25 * 10**6  # "maximum payload size of 25MB" per add call (docs.x.ai)

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.batches: dict[str, XAIBatch] = {}

    def routes(self) -> list[Route]:
        b = PREFIX + r"/batches/(?P<batch_id>[^/:]+)"
        return [
            ("POST", PREFIX + r"/batches", self.create),
            ("GET", PREFIX + r"/batches", self.list),
            ("GET", b, self.get),
            ("POST", b + r"/requests", self.add),
            ("GET", b + r"/results", self.results),
            ("POST", b + r":cancel", self.cancel),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self.error(401, "No API key provided: use an Authorization: Bearer header.")
        return None

    def headers(self) -> dict[str, str]:
        return {"x-request-id": rand_id("", 32, "0123456789abcdef")}

    # ---------------------------------------------------------------- batches

    def create(self, req: Request) -> Response:
        body = _json(req)
        if set(body) - {"name", "input_file_id"}:
            raise fail(400, f"unknown field(s): {sorted(set(body) - {'name', 'input_file_id'})}")
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise fail(400, "name: a batch needs a name")
        if "input_file_id" in body:
            raise fail(400, "input_file_id: creating from a file is not emulated")
        with self.emu.lock:
            b = XAIBatch(
                id=rand_id("batch_", 32, "0123456789abcdef"),
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                name=body["name"],
            )
            self.batches[b.id] = b
            self.emu.created.append(("xai", b.id, None, None))
            return json_response(b.to_json())

    def _batch(self, batch_id: str) -> XAIBatch:
        b = self.batches.get(batch_id)
        if b is None:
            raise fail(404, f"batch {batch_id} not found")
        self._advance(b)
        return b

    def get(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._batch(batch_id).to_json())

    def list(self, req: Request) -> Response:
        with self.emu.lock:
            ordered = sorted(self.batches.values(), key=lambda b: -b.seq)
            start, limit = _page(req, len(ordered))
            page = ordered[start : start + limit]
            for b in page:
                self._advance(b)
            more = start + limit < len(ordered)
            return json_response(
                {
                    "batches": [b.to_json() for b in page],
                    "pagination_token": str(start + limit) if more else None,
                }
            )

    def add(self, req: Request, batch_id: str) -> Response:
        if len(req.body) > self.MAX_ADD_BYTES:
            raise fail(
                413,
                f"the request is {len(req.body)} bytes; an add call carries at most "
                f"{self.MAX_ADD_BYTES}",
            )
        body = _json(req)
        items = body.get("batch_requests")
        if set(body) != {"batch_requests"} or not isinstance(items, list) or not items:
            raise fail(400, "batch_requests: a non-empty list is required (and nothing else)")
        with self.emu.lock:
            b = self._batch(batch_id)
            if b.cancel_at is not None:
                raise fail(400, f"batch {batch_id} is cancelled: no requests can be added")
            rows, seen = [], set()
            for i, item in enumerate(items):
                row = self._row(b, item, i)
                if row.custom_id in b.ids or row.custom_id in seen:
                    raise fail(
                        400,
                        f"batch_requests[{i}]: batch_request_id {row.custom_id!r} "
                        "is already in the batch",
                    )
                seen.add(row.custom_id)
                rows.append(row)
            if b.fault is None and b.model is None:
                b.model = rows[0].ctx.model if rows[0].ctx else None
                b.fault = self.emu.faults.take_batch("xai", b.model)
            b.ids |= seen
            b.pending.extend(rows)
            b.counts["num_requests"] += len(rows)
            b.counts["num_pending"] += len(rows)
            b.ended = False
            return json_response({})

    def results(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            start, limit = _page(req, len(b.results))
            page = b.results[start : start + limit]
            more = start + limit < len(b.results)
            return json_response(
                {"results": page, "pagination_token": str(start + limit) if more else None}
            )

    def cancel(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if b.cancel_at is None:
                b.cancel_at = time.time()
                b.cancel_done = b.rows_done_by_now(self.emu, len(b.pending))
                self._advance(b)
            return json_response(b.to_json())

    # ---------------------------------------------------------------- processing

    def _advance(self, b: XAIBatch) -> None:
        """Lazy processing (caller holds the lock): rows added so far run once the delay is over;
        a cancel keeps what was done and cancels the rest; an expiry leaves the rest pending."""
        if b.ended or not b.pending or (b.cancel_at is None and not b.ready(self.emu)):
            return
        rows, limit = b.pending, None
        if b.cancel_at is not None:
            limit = b.cancel_done
        elif b.fault and b.fault.outcome == "expired":
            limit = int(len(rows) * b.fault.fraction_done)
        failed = bool(b.fault and b.fault.outcome in ("failed", "all_failed"))
        outcomes = run_rows(
            self.emu, "xai", rows[:limit] if limit is not None else rows, all_failed=failed
        )
        for o in shuffled(outcomes, b.id, self.emu):
            ok = o.status == "succeeded"
            b.counts["num_success" if ok else "num_error"] += 1
            line = self.emu.faults.render_line("xai", self._line(b, o), ("batch_result",))
            try:
                b.results.append(json.loads(line))
            except ValueError:  # a damaged item: the page stays JSON, the item is text
                b.results.append(line)  # type: ignore[arg-type]
        left = len(rows) - len(outcomes)
        b.counts["num_pending"] -= len(outcomes)
        if b.cancel_at is not None:
            b.counts["num_pending"] -= left
            b.counts["num_cancelled"] += left
        elif left:
            b.expired = True
        b.pending, b.ended = [], True

    def _line(self, b: XAIBatch, o: Outcome) -> dict[str, Any]:
        rid = o.row.custom_id
        if o.status != "succeeded":
            kind = o.error.kind if o.error else "server_error"
            message = o.error.message if o.error else "internal error"
            return {
                "batch_request_id": rid,
                "batch_result": {"error": {"code": GRPC[kind], "message": message}},
            }
        assert o.reply is not None and o.usage is not None and o.row.ctx is not None
        u = o.usage
        completion = {
            "id": rand_id("", 32, "0123456789abcdef"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": o.row.ctx.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": o.reply.text, "refusal": None},
                    "finish_reason": openai_finish_reason(o.reply.stop_reason),
                }
            ],
            "usage": {
                "prompt_tokens": u.input,
                "completion_tokens": u.output,
                "total_tokens": u.input + u.output,
                "prompt_tokens_details": {
                    "text_tokens": u.input,
                    "audio_tokens": 0,
                    "image_tokens": 0,
                    "cached_tokens": u.cache_read,
                },
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
                "num_sources_used": 0,
            },
            "system_fingerprint": "fp_emulator",
        }
        return {
            "batch_request_id": rid,
            "batch_result": {"response": {"chat_get_completion": completion}},
        }

    def _row(self, b: XAIBatch, item: Any, i: int) -> Row:
        """One added request; what the gateway refuses fails the whole add call."""
        where = f"batch_requests[{i}]"
        if not isinstance(item, dict) or set(item) != {"batch_request_id", "batch_request"}:
            raise fail(400, f"{where}: needs batch_request_id and batch_request, nothing else")
        rid, req = item["batch_request_id"], item["batch_request"]
        if not isinstance(rid, str) or not rid:
            raise fail(400, f"{where}.batch_request_id: a non-empty string is required")
        if not isinstance(req, dict) or list(req) != ["chat_get_completion"]:
            raise fail(400, f"{where}.batch_request: only chat_get_completion is emulated")
        body = req["chat_get_completion"]
        if not isinstance(body, dict) or set(body) - CHAT_PARAMS:
            extra = sorted(set(body) - CHAT_PARAMS) if isinstance(body, dict) else body
            raise fail(400, f"{where}: unknown field(s) {extra}")
        model, msgs = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model.startswith("grok-"):
            raise fail(400, f"{where}.model: {model!r} is not an xAI model")
        if (
            not isinstance(msgs, list)
            or not msgs
            or any(not isinstance(m, dict) or m.get("role") not in ROLES for m in msgs)
        ):
            raise fail(400, f"{where}.messages: a non-empty list of {list(ROLES)} messages")
        mt = body.get("max_tokens")
        if mt is not None and (type(mt) is not int or mt < 1):
            raise fail(400, f"{where}.max_tokens: an integer >= 1")
        t = body.get("temperature")
        if t is not None and (type(t) not in (int, float) or not 0 <= t <= 2):
            raise fail(400, f"{where}.temperature: a number in [0, 2]")
        try:
            system = [
                text_of(m.get("content"), f"{where}.messages.{j}.content")
                for j, m in enumerate(msgs)
                if m["role"] == "system"
            ]
            turns = [
                {"role": m["role"], "content": text_of(m.get("content"), f"{where}.messages")}
                for m in msgs
                if m["role"] != "system"
            ]
        except ValueError as exc:
            raise fail(400, str(exc)) from None
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        ctx = CallContext(
            "xai", model, rid, "\n\n".join(system) if system else None, turns, None, params, b.id
        )
        return Row(rid, ctx, source=item)


def _json(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise fail(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise fail(400, "the body must be a JSON object")
    return body


def _page(req: Request, total: int) -> tuple[int, int]:
    """(start, size) of a page: `limit` (1–1000, default 100) from `pagination_token`."""
    raw_limit, token = req.query.get("limit", "100"), req.query.get("pagination_token", "0")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise fail(400, "limit: an integer in [1, 1000]")
    if not token.isdigit() or int(token) > total:
        raise fail(400, f"pagination_token: {token!r} is not a token this list gave")
    return int(token), int(raw_limit)
