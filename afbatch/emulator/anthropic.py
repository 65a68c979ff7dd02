"""Anthropic Message Batches API (``/v1/messages/batches``)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .anthropic_http import fail
from .anthropic_input import CUSTOM_ID, claude_context, params_problem
from .anthropic_output import result_line
from .anthropic_records import AnthropicBatch
from .batches import Row, rand_id, run_rows, shuffled
from .web import Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator


class AnthropicService:
    name = "anthropic"
    MAX_REQUESTS = 100_000
    MAX_BODY_BYTES = 256 * 1024 * 1024
    # The brief's strict mode: reject bad ``params`` at create with a 400. The public docs say
    # params are checked asynchronously; set False to get per-row ``errored`` results instead.
    VALIDATE_PARAMS_AT_CREATE = True

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.batches: dict[str, AnthropicBatch] = {}

    def routes(self) -> list[Route]:
        base = r"/v1/messages/batches"
        one = base + r"/(?P<batch_id>[^/]+)"
        return [
            ("POST", base, self.create),
            ("GET", base, self.list),
            ("GET", one, self.retrieve),
            ("DELETE", one, self.delete),
            ("POST", one + "/cancel", self.cancel),
            ("GET", one + "/results", self.results),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        if not req.headers.get("x-api-key") and not req.headers.get("authorization", "").startswith(
            "Bearer "
        ):
            return self.error(401, "x-api-key header is required")
        if not req.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        return None

    def headers(self) -> dict[str, str]:
        return {"request-id": rand_id("req_", 24)}

    # ---------------------------------------------------------------- endpoints

    def create(self, req: Request) -> Response:
        if len(req.body) > self.MAX_BODY_BYTES:
            raise fail(
                413, f"Request exceeds the maximum allowed size of {self.MAX_BODY_BYTES} bytes."
            )
        try:
            body = req.json()
        except ValueError:
            raise fail(400, "Request body is not valid JSON.") from None
        if not isinstance(body, dict) or set(body) != {"requests"}:
            raise fail(
                400, "The request body must be an object with exactly one field, 'requests'."
            )
        requests = body["requests"]
        if not isinstance(requests, list) or not requests:
            raise fail(400, "requests: must be a non-empty list.")
        if len(requests) > self.MAX_REQUESTS:
            raise fail(400, f"requests: a batch holds at most {self.MAX_REQUESTS} requests.")
        rows, seen = [], set()
        for i, item in enumerate(requests):
            if not isinstance(item, dict) or set(item) != {"custom_id", "params"}:
                raise fail(
                    400, f"requests.{i}: must have exactly the fields 'custom_id' and 'params'."
                )
            cid = item["custom_id"]
            if not isinstance(cid, str) or not CUSTOM_ID.fullmatch(cid):
                raise fail(
                    400,
                    f"requests.{i}.custom_id: String should match pattern "
                    "'^[a-zA-Z0-9_-]{1,64}$'.",
                )
            if cid in seen:
                raise fail(
                    400,
                    f"requests.{i}.custom_id: Duplicate custom_id '{cid}'; "
                    "custom_ids must be unique within a batch.",
                )
            seen.add(cid)
            if not isinstance(item["params"], dict):
                raise fail(400, f"requests.{i}.params: Input should be an object.")
            problem = params_problem(item["params"])
            if problem and self.VALIDATE_PARAMS_AT_CREATE:
                raise fail(400, f"requests.{i}.params.{problem}")
            rows.append(
                Row(cid, None, invalid=problem) if problem else self._row(cid, item["params"])
            )
        model = next((r.ctx.model for r in rows if r.ctx), None)
        with self.emu.lock:
            b = AnthropicBatch(
                id=rand_id("msgbatch_", 24),
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("anthropic", model),
                rows=rows,
            )
            for r in rows:  # the responder's batch_id is only known now
                if r.ctx:
                    r.ctx = replace(r.ctx, batch_id=b.id)
            self.batches[b.id] = b
            self.emu.created.append(("anthropic", b.id, model, len(rows)))
            return json_response(b.to_json(req.base_url))

    def _batch(self, batch_id: str) -> AnthropicBatch:
        b = self.batches.get(batch_id)
        if b is None:
            raise fail(404, f"Message batch {batch_id} not found.")
        self._advance(b)
        return b

    def retrieve(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._batch(batch_id).to_json(req.base_url))

    def list(self, req: Request) -> Response:
        raw = req.query.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise fail(400, "limit: must be an integer between 1 and 1000.")
        limit = int(raw)
        with self.emu.lock:
            ordered = sorted(self.batches.values(), key=lambda b: -b.seq)  # newest first
            ids = [b.id for b in ordered]
            after, before = req.query.get("after_id"), req.query.get("before_id")
            if before:
                end = ids.index(before) if before in ids else 0
                page, has_more = ordered[max(0, end - limit) : end], end > limit
            else:
                start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
                page, has_more = ordered[start : start + limit], start + limit < len(ids)
            for b in page:
                self._advance(b)
            data = [b.to_json(req.base_url) for b in page]
        return json_response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    def cancel(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if not b.ended and b.cancel_at is None:
                b.cancel_at = time.time()
                b.cancel_done = b.rows_done_by_now(self.emu, len(b.rows))
            return json_response(b.to_json(req.base_url))

    def delete(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if not b.ended:
                raise fail(
                    400, f"Message batch {batch_id} is still processing; cancel it before deleting."
                )
            del self.batches[batch_id]
        return json_response({"id": batch_id, "type": "message_batch_deleted"})

    def results(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if not b.ended or b.results is None:
                raise fail(
                    400,
                    f"Message batch {batch_id} has not finished processing; results are available "
                    "once processing_status is 'ended'.",
                )
            data = "".join(line + "\n" for line in b.results).encode()
        return Response(200, data, "application/binary")

    # ---------------------------------------------------------------- processing

    def _advance(self, b: AnthropicBatch) -> None:
        if b.ended or (b.cancel_at is None and not b.ready(self.emu)):
            return
        limit, stop = None, "expired"
        if b.cancel_at is not None:
            limit, stop = b.cancel_done, "canceled"
        elif b.fault and b.fault.outcome == "expired":
            limit = int(len(b.rows) * b.fault.fraction_done)
        all_failed = bool(b.fault and b.fault.outcome in ("failed", "all_failed"))
        outcomes = run_rows(
            self.emu, "anthropic", b.rows, limit=limit, stop_status=stop, all_failed=all_failed
        )
        render = self.emu.faults.render_line  # lines are damaged once, when the batch ends
        b.results = [
            render("anthropic", result_line(o), ("result",))
            for o in shuffled(outcomes, b.id, self.emu)
        ]
        b.counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for o in outcomes:
            b.counts[o.status] += 1
        b.ended, b.ended_at = True, time.time()

    def _row(self, cid: str, params: dict[str, Any]) -> Row:
        ctx, ttl = claude_context("anthropic", cid, params, "")
        return Row(cid, ctx, cache_marked=ttl is not None, source={"ttl": ttl})
