"""What the Gemini API's batch mode and Vertex AI batch prediction share: the GenerateContentRequest
a request line carries, the GenerateContentResponse a result line carries, the job states (both
vocabularies), google.rpc codes, and the SDK's (google-genai) exceptions.
"""

from __future__ import annotations

import importlib
from typing import Any

from afbatch.providers.base import REJECTS, BatchStatus, Failure, classify_http, malformed
from afbatch.types import Request, Result, RowStatus, Usage

# The SDK's JobState (JOB_STATE_*) and the raw REST resource's BatchState (BATCH_STATE_*) share
# their suffixes; the SDK renames only some BATCH_STATE_* values and passes the others through.
STATUS = {
    "UNSPECIFIED": BatchStatus.VALIDATING,
    "QUEUED": BatchStatus.VALIDATING,
    "PENDING": BatchStatus.VALIDATING,
    "RUNNING": BatchStatus.IN_PROGRESS,
    "UPDATING": BatchStatus.IN_PROGRESS,
    "PAUSED": BatchStatus.IN_PROGRESS,  # resumes on its own; nothing to collect yet
    "CANCELLING": BatchStatus.CANCELLING,
    "SUCCEEDED": BatchStatus.COMPLETED,
    "PARTIALLY_SUCCEEDED": BatchStatus.COMPLETED,  # per-line errors are in the output file
    "FAILED": BatchStatus.FAILED,
    "CANCELLED": BatchStatus.CANCELLED,
    "EXPIRED": BatchStatus.EXPIRED,
}

# google.rpc.Code of a line's `error`/`status` (a line may carry an HTTP code instead).
RPC_KINDS = {
    1: "canceled",
    2: "server_error",
    3: "invalid_request",
    4: "timeout",
    5: "invalid_request",
    7: "auth",
    8: "rate_limit",
    9: "invalid_request",
    10: "server_error",
    11: "invalid_request",
    12: "invalid_request",
    13: "server_error",
    14: "overloaded",
    15: "server_error",
    16: "auth",
}
RPC_NAMES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def normalise(state: str) -> BatchStatus:
    """JOB_STATE_* or BATCH_STATE_* → BatchStatus (an unknown state is still running)."""
    suffix = state.removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_")
    return STATUS.get(suffix, BatchStatus.IN_PROGRESS)


def display_name(token: str) -> str:
    """The batch's display name: it carries the shard's idempotency token."""
    return f"afbatch-{token}"


def _get(d: Any, camel: str, snake: str) -> Any:
    """A field of a REST answer (camelCase) or of the SDK's own dump (snake_case)."""
    if not isinstance(d, dict):
        return None
    return d[camel] if camel in d else d.get(snake)


def _int(d: Any, camel: str, snake: str) -> int:
    return int(_get(d, camel, snake) or 0)


def render_line(request: Request) -> dict[str, Any]:
    """`{key, request}` with a GenerateContentRequest: the system prompt as `system_instruction`,
    turns as `user`/`model` contents, `generation_config`."""
    contents = [
        {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
        for m in request.messages
    ]
    if request.prefill:  # never sent (supports_prefill is False); shown as it would go
        contents.append({"role": "model", "parts": [{"text": request.prefill}]})
    body: dict[str, Any] = {"contents": contents}
    if request.system:
        body["system_instruction"] = {"parts": [{"text": request.system}]}
    config: dict[str, Any] = {"max_output_tokens": request.max_tokens}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    body["generation_config"] = config
    return {"key": request.id, "request": body}


def parse_response(key: str, resp: dict[str, Any], line: dict[str, Any]) -> Result:
    """A GenerateContentResponse as the row keyed `key` (`line`: the whole line, for a malformed
    row's snippet)."""
    usage_md = _get(resp, "usageMetadata", "usage_metadata") or {}
    usage = Usage(
        input_tokens=_int(usage_md, "promptTokenCount", "prompt_token_count"),
        cached_tokens=_int(usage_md, "cachedContentTokenCount", "cached_content_token_count"),
        # thinking is billed as output
        output_tokens=(
            _int(usage_md, "candidatesTokenCount", "candidates_token_count")
            + _int(usage_md, "thoughtsTokenCount", "thoughts_token_count")
        ),
    )
    candidates = resp.get("candidates") or []
    if not candidates:
        # The prompt itself was blocked: no candidate, a block reason. Like a refusal, it is
        # the answer (empty), with the reason kept.
        feedback = _get(resp, "promptFeedback", "prompt_feedback") or {}
        reason = _get(feedback, "blockReason", "block_reason")
        if not reason:
            return malformed(line, "key", "response without candidates")
        return Result(
            key, RowStatus.SUCCEEDED, text="", usage=usage, stop_reason=f"PROMPT_BLOCKED:{reason}"
        )
    first = candidates[0]
    parts = (first.get("content") or {}).get("parts") or []
    # Thought summaries (`thought: true`) are not the answer.
    text = "".join(p.get("text") or "" for p in parts if not p.get("thought"))
    # SAFETY, RECITATION, BLOCKLIST, ... end the answer as a refusal does; MAX_TOKENS cuts it:
    # both are answers, with the reason kept (as for the other providers).
    reason = _get(first, "finishReason", "finish_reason")
    return Result(key, RowStatus.SUCCEEDED, text=text, usage=usage, stop_reason=reason)


def error_row(key: str, err: dict[str, Any]) -> Result:
    """A line's google.rpc.Status (or a body with an HTTP code) as an errored or canceled row."""
    code, name = err.get("code"), str(err.get("status") or "")
    message = str(err.get("message") or name or code or "error")
    rpc = RPC_NAMES.get(name) or (code if isinstance(code, int) and code < 100 else None)
    if isinstance(code, int) and code >= 100 and not name:
        kind = classify_http(code, None, message)
    else:
        kind = RPC_KINDS.get(rpc or 2, "server_error")
    if kind == "canceled":
        return Result(key, RowStatus.CANCELED, error_kind="canceled", error_message=message)
    if kind == "rate_limit" and classify_http(429, name, message) == "billing":
        kind = "billing"  # quota or billing of the account, not the moment
    return Result(key, RowStatus.ERRORED, error_kind=kind, error_message=message)


def genai_failure(exc: BaseException) -> Failure | None:
    """google-genai's exceptions (and its HTTP client's connection errors) as a Failure."""
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        code = int(exc.code or 500)
        return Failure(
            f"HTTP {code} {exc.status or ''}: {exc.message or exc}".replace(" :", ":"),
            retryable=code in (408, 409, 429) or code >= 500,
            rejects_request=code in REJECTS,
        )
    if isinstance(exc, transport_errors()):
        return Failure(f"cannot connect ({exc})", retryable=True)
    return None


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of whichever HTTP client the SDK runs on (httpx or its fork httpx2)."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except ImportError:
            continue
    return tuple(found)
