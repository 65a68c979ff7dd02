"""Anthropic Message Batches API (``/v1/messages/batches``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .batches import Job, Outcome, Row, finish_stop_reason, rand_id, run_rows, shuffled, text_of
from .responders import CallContext
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# the SDK's MessageCreateParams keys, plus the sampling knobs older models still take
PARAMS = frozenset(
    "cache_control container diagnostics inference_geo max_tokens messages metadata model "
    "output_config service_tier speed stop_sequences stream system thinking tool_choice tools "
    "user_profile_id workspace_id temperature top_p top_k".split()
)
# Claude's InvokeModel body on Bedrock: no ``model`` (it is the job's modelId), no API-only knobs
BEDROCK_PARAMS = (
    PARAMS
    - {
        "model",
        "container",
        "diagnostics",
        "inference_geo",
        "service_tier",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
) | {"anthropic_version", "anthropic_beta"}
STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
ROW_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error",
    "server_error": "api_error",
    "auth": "authentication_error",
}


# Anthropic, "What's new in Claude 4.6" (prefill removal): a prefilled last assistant turn is a 400
# on Claude 4.6 models, and later models keep that. Read from the id's version, not from afbatch's
# catalog, so a test against the emulator checks that catalog instead of repeating it.
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:-\d{8})?")
NO_PREFILL = (
    "This model does not support assistant message prefill. "
    "The conversation must end with a user message."
)


def rejects_prefill(model: str) -> bool:
    """Claude 4.6 and later (plain or dated ids; Bedrock's through claude_model_name)."""
    m = _CLAUDE_VERSION.fullmatch(model)
    return m is not None and (int(m.group(1)), int(m.group(2) or 0)) >= (4, 6)


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": rand_id("req_", 24),
    }


def fail(status: int, message: str) -> Reject:
    return Reject(json_response(error_body(STATUS_TYPES.get(status, "api_error"), message), status))


@dataclass
class AnthropicBatch(Job):
    rows: list[Row] = field(default_factory=list)
    results: list[str] | None = None  # the output lines, as served
    counts: dict[str, int] = field(default_factory=dict)
    ended_at: float | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        status = (
            "ended"
            if self.ended
            else ("canceling" if self.cancel_at is not None else "in_progress")
        )
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        counts.update(self.counts if self.ended else {"processing": len(self.rows)})
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": rfc3339(self.ended_at),
            "created_at": rfc3339(self.created),
            "expires_at": rfc3339(self.created + 24 * 3600),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(self.cancel_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results"
            if self.ended
            else None,
        }


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
            render("anthropic", self._line(o), ("result",))
            for o in shuffled(outcomes, b.id, self.emu)
        ]
        b.counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for o in outcomes:
            b.counts[o.status] += 1
        b.ended, b.ended_at = True, time.time()

    def _line(self, o: Outcome) -> dict[str, Any]:
        if o.status in ("canceled", "expired"):
            return {"custom_id": o.row.custom_id, "result": {"type": o.status}}
        if o.status == "errored":
            assert o.error is not None
            err = error_body(ROW_ERROR_TYPES[o.error.kind], o.error.message)
            return {"custom_id": o.row.custom_id, "result": {"type": "errored", "error": err}}
        assert o.reply is not None and o.usage is not None and o.row.ctx is not None
        return {
            "custom_id": o.row.custom_id,
            "result": {
                "type": "succeeded",
                "message": claude_message("msg_", o.row.ctx.model, o, service_tier="batch"),
            },
        }

    def _row(self, cid: str, params: dict[str, Any]) -> Row:
        ctx, ttl = claude_context("anthropic", cid, params, "")
        return Row(cid, ctx, cache_marked=ttl is not None, source={"ttl": ttl})


# ---------------------------------------------------------------- shared with Bedrock's Claude


def claude_message(
    id_prefix: str, model: str, o: Outcome, service_tier: str | None = None
) -> dict[str, Any]:
    """A Messages API response body for a succeeded row."""
    assert o.reply is not None and o.usage is not None
    u = o.usage
    one_hour = isinstance(o.row.source, dict) and o.row.source.get("ttl") == "1h"
    usage: dict[str, Any] = {
        "input_tokens": u.uncached_input,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if one_hour else u.cache_write,
            "ephemeral_1h_input_tokens": u.cache_write if one_hour else 0,
        },
    }
    if service_tier:
        usage["service_tier"] = service_tier
    return {
        "id": rand_id(id_prefix, 24),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": o.reply.text}],
        "stop_reason": finish_stop_reason(o.reply.stop_reason),
        "stop_sequence": None,
        "usage": usage,
    }


def claude_context(
    provider: str, cid: str, params: dict[str, Any], batch_id: str | None
) -> tuple[CallContext, str | None]:
    """CallContext from an already validated Messages body; also the cache TTL if a breakpoint is
    set."""
    ttls = [
        b["cache_control"].get("ttl", "5m")
        for b in _blocks(params)
        if isinstance(b.get("cache_control"), dict)
    ]
    if isinstance(params.get("cache_control"), dict):
        ttls.append(params["cache_control"].get("ttl", "5m"))
    system = params.get("system")
    messages = [
        {"role": m["role"], "content": text_of(m["content"], "content")} for m in params["messages"]
    ]
    prefill = messages.pop()["content"] if messages[-1]["role"] == "assistant" else None
    rest = {k: v for k, v in params.items() if k not in ("model", "messages", "system")}
    ctx = CallContext(
        provider,
        params.get("model", ""),
        cid,
        None if system is None else text_of(system, "system"),
        messages,
        prefill,
        rest,
        batch_id,
    )
    return ctx, ("1h" if "1h" in ttls else "5m") if ttls else None


def _blocks(params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every content block of the system prompt and the messages."""
    blocks = list(params["system"]) if isinstance(params.get("system"), list) else []
    for m in params["messages"]:
        if isinstance(m["content"], list):
            blocks += m["content"]
    return [b for b in blocks if isinstance(b, dict)]


def params_problem(
    params: dict[str, Any], *, bedrock: bool = False, model: str | None = None
) -> str | None:
    """What the Messages API would reject in ``params`` ("<field>: <why>"), or None.

    With ``bedrock`` the body is Bedrock's InvokeModel flavour: ``anthropic_version``
    instead of ``model``, and Bedrock's own extraneous-key wording; ``model`` is then the
    Claude model name of the job's modelId (``claude_model_name``).
    """
    allowed = BEDROCK_PARAMS if bedrock else PARAMS
    for key in params:
        if key not in allowed:
            return (
                f"extraneous key [{key}] is not permitted"
                if bedrock
                else f"{key}: Extra inputs are not permitted"
            )
    if bedrock:
        if params.get("anthropic_version") != "bedrock-2023-05-31":
            return "anthropic_version: required, and must be 'bedrock-2023-05-31'"
    elif not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    mt = params.get("max_tokens")
    if type(mt) is not int or mt < 1:
        return (
            "max_tokens: Field required"
            if mt is None
            else "max_tokens: Input should be an integer >= 1"
        )
    if params.get("stream"):
        return "stream: streaming is not supported in batches"
    for key, lo, hi in (("temperature", 0, 1), ("top_p", 0, 1)):
        v = params.get(key)
        if v is not None and (type(v) not in (int, float) or not lo <= v <= hi):
            return f"{key}: Input should be a number between {lo} and {hi}"
    if "top_k" in params and (type(params["top_k"]) is not int or params["top_k"] < 0):
        return "top_k: Input should be a non-negative integer"
    if "stop_sequences" in params and not (
        isinstance(params["stop_sequences"], list)
        and all(isinstance(s, str) for s in params["stop_sequences"])
    ):
        return "stop_sequences: Input should be a list of strings"
    if params.get("cache_control") is not None and _cache_control_problem(params["cache_control"]):
        return "cache_control: expected {'type': 'ephemeral', 'ttl': '5m' | '1h'}"
    if "system" in params:
        problem = _content_problem(params["system"], "system", allow_empty=True)
        if problem:
            return problem
    problem = _messages_problem(params.get("messages"))
    named = model if bedrock else params["model"]  # Bedrock's body names no model
    if (
        problem is None
        and params["messages"][-1]["role"] == "assistant"
        and named is not None
        and rejects_prefill(named)
    ):
        return f"messages: {NO_PREFILL}"
    return problem


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: Field required, a non-empty list"
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or set(m) != {"role", "content"}
            or m["role"] not in ("user", "assistant")
        ):
            return f"messages.{i}: each message needs exactly 'role' (user|assistant) and 'content'"
        if i == 0 and m["role"] != "user":
            return "messages.0.role: the first message must use the 'user' role"
        if i > 0 and m["role"] == messages[i - 1]["role"]:
            return f"messages.{i}.role: roles must alternate between 'user' and 'assistant'"
        final_assistant = i == len(messages) - 1 and m["role"] == "assistant"
        problem = _content_problem(
            m["content"], f"messages.{i}.content", allow_empty=final_assistant
        )
        if problem:
            return problem
    tail = text_of(messages[-1]["content"], "content")
    if messages[-1]["role"] == "assistant" and tail != tail.rstrip():
        return "messages: final assistant content cannot end with trailing whitespace"
    return None


def _content_problem(content: Any, where: str, allow_empty: bool) -> str | None:
    if isinstance(content, str):
        if not content and not allow_empty:
            return (
                f"{where}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
        return None
    if not isinstance(content, list):
        return f"{where}: Input should be a string or a list of content blocks"
    for j, block in enumerate(content):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            return f"{where}.{j}: the emulator supports text blocks only"
        extra = set(block) - {"type", "text", "cache_control", "citations"}
        if extra:
            return f"{where}.{j}.{sorted(extra)[0]}: Extra inputs are not permitted"
        if block.get("cache_control") is not None and _cache_control_problem(
            block["cache_control"]
        ):
            return (
                f"{where}.{j}.cache_control: expected {{'type': 'ephemeral', 'ttl': '5m' | '1h'}}"
            )
    return None


def _cache_control_problem(cc: Any) -> bool:
    return (
        not isinstance(cc, dict)
        or cc.get("type") != "ephemeral"
        or cc.get("ttl", "5m") not in ("5m", "1h")
        or bool(set(cc) - {"type", "ttl"})
    )
