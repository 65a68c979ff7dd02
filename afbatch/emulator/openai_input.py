"""What the emulated OpenAI service checks as the real one does: a batch's create parameters
(a 400), and its input file (structural problems fail the whole batch, parameter problems fail
their row with a 400)."""

from __future__ import annotations

import json
from typing import Any

from .batches import Row, text_of
from .openai_http import fail
from .openai_records import DAY
from .responders import CallContext

# One string reads as the API's parameter list.
CHAT_PARAMS = frozenset(
    "audio frequency_penalty function_call functions logit_bias logprobs "  # noqa: SIM905
    "max_completion_tokens max_tokens messages metadata modalities model moderation n "
    "parallel_tool_calls prediction presence_penalty prompt_cache_key prompt_cache_options "
    "prompt_cache_retention reasoning_effort response_format safety_identifier seed "
    "service_tier stop store stream stream_options temperature tool_choice tools "
    "top_logprobs top_p user verbosity web_search_options".split()
)
ROLES = ("system", "developer", "user", "assistant")


def reasoning_model(model: str) -> bool:
    # o-series and GPT-5 family reject ``max_tokens`` (they want ``max_completion_tokens``)
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


def read_rows(
    data: bytes, batch_id: str, endpoint: str, max_bytes: int, max_requests: int
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Validate an input file as the real service does before running it: the rows, or the
    errors that fail the whole batch."""
    if len(data) > max_bytes:
        return [], [
            batch_error(
                "file_too_large", f"The input file is larger than the {max_bytes}-byte limit."
            )
        ]
    lines = data.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return [], [batch_error("empty_file", "The input file is empty.")]
    if len(lines) > max_requests:
        return [], [
            batch_error(
                "too_many_tasks",
                f"The input file has {len(lines)} requests; the limit is {max_requests}.",
            )
        ]
    rows, errors, seen = [], [], set()
    model = None
    for n, raw in enumerate(lines, 1):
        try:
            obj = json.loads(raw)
        except ValueError:
            errors.append(
                batch_error("invalid_json_line", "This line is not parseable as valid JSON.", n)
            )
            continue
        problem = line_problem(obj, endpoint)
        if problem:
            errors.append(batch_error(problem[0], problem[1], n, problem[2]))
            continue
        if obj["custom_id"] in seen:
            errors.append(
                batch_error(
                    "duplicate_custom_id",
                    f"The custom_id '{obj['custom_id']}' is not unique within the batch.",
                    n,
                    "custom_id",
                )
            )
            continue
        seen.add(obj["custom_id"])
        model = model or obj["body"]["model"]
        if obj["body"]["model"] != model:
            errors.append(
                batch_error(
                    "model_mismatch",
                    f"Model '{obj['body']['model']}' differs from "
                    f"'{model}': one model per input file.",
                    n,
                    "body.model",
                )
            )
            continue
        rows.append(input_row(obj, batch_id))
    return rows, errors


def input_row(obj: dict[str, Any], batch_id: str) -> Row:
    """A checked line as a row to answer (or to refuse with a 400, for that row only)."""
    body, cid = obj["body"], obj["custom_id"]
    invalid = body_problem(body)
    if invalid:
        return Row(cid, None, invalid=invalid)
    try:
        system = [
            text_of(m.get("content"), f"messages.{i}.content")
            for i, m in enumerate(body["messages"])
            if m["role"] in ("system", "developer")
        ]
        messages = [
            {"role": m["role"], "content": text_of(m.get("content"), f"messages.{i}.content")}
            for i, m in enumerate(body["messages"])
            if m["role"] not in ("system", "developer")
        ]
    except ValueError as exc:
        return Row(cid, None, invalid=str(exc))
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    ctx = CallContext(
        "openai",
        body["model"],
        cid,
        "\n\n".join(system) if system else None,
        messages,
        None,
        params,
        batch_id,
    )
    return Row(cid, ctx, cache_marked="prompt_cache_key" in body, source=obj)


def batch_error(
    code: str, message: str, line: int | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": param}


def line_problem(obj: Any, endpoint: str) -> tuple[str, str, str | None] | None:
    """Structural problems that fail the whole batch: (code, message, param)."""
    if not isinstance(obj, dict):
        return "invalid_json_line", "Each line must be a JSON object.", None
    for key in ("custom_id", "method", "url", "body"):
        if key not in obj:
            return "missing_required_parameter", f"Missing required parameter: '{key}'.", key
    extra = sorted(set(obj) - {"custom_id", "method", "url", "body"})
    if extra:
        return "invalid_request", f"Unrecognized field(s) in request line: {extra}.", extra[0]
    if not isinstance(obj["custom_id"], str) or not obj["custom_id"]:
        return "invalid_request", "custom_id must be a non-empty string.", "custom_id"
    if obj["method"] != "POST":
        return (
            "invalid_request",
            f"Invalid method '{obj['method']}': only POST is supported.",
            "method",
        )
    if obj["url"] != endpoint:
        return (
            "url_mismatch",
            f"The url '{obj['url']}' does not match the batch endpoint '{endpoint}'.",
            "url",
        )
    body = obj["body"]
    if not isinstance(body, dict):
        return "invalid_request", "body must be a JSON object.", "body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return (
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            "body.model",
        )
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "invalid_request", "body.messages must be a non-empty array.", "body.messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return (
                "invalid_request",
                f"body.messages[{i}].role must be one of {list(ROLES)}.",
                "body.messages",
            )
    return None


def body_problem(body: dict[str, Any]) -> str | None:
    """Parameter problems the real API answers with a 400 for that row only."""
    for key in body:
        if key not in CHAT_PARAMS:
            return f"Unrecognized request argument supplied: {key}"
    if body.get("stream"):
        return "Streaming is not supported in the Batch API."
    if "max_tokens" in body and reasoning_model(body["model"]):
        return (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and (type(body[key]) is not int or body[key] < 1):
            return f"Invalid '{key}': must be an integer >= 1."
    for key, hi in (("temperature", 2), ("top_p", 1)):
        v = body.get(key)
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= hi):
            return f"Invalid '{key}': must be a number between 0 and {hi}."
    n = body.get("n", 1)
    if type(n) is not int or not 1 <= n <= 128:
        return "Invalid 'n': must be an integer between 1 and 128."
    return None


def first_model(lines: list[bytes]) -> str | None:
    try:
        model = json.loads(lines[0])["body"]["model"]
        return model if isinstance(model, str) else None
    except (ValueError, LookupError, TypeError):
        return None


def check_metadata(md: Any) -> None:
    if md is None:
        return
    if not isinstance(md, dict):
        raise fail(400, "Invalid type for 'metadata': expected an object.", param="metadata")
    if len(md) > 16:
        raise fail(400, "Invalid 'metadata': too many keys (maximum 16).", param="metadata")
    for k, v in md.items():
        if len(k) > 64:
            raise fail(
                400,
                f"Invalid 'metadata': key '{k[:20]}...' is longer than 64 characters.",
                param="metadata",
            )
        if not isinstance(v, str) or len(v) > 512:
            raise fail(
                400,
                f"Invalid 'metadata': value for '{k}' must be a string of at most 512 characters.",
                param="metadata",
            )


def check_expires_after(ea: Any) -> None:
    if ea is None:
        return
    if (
        not isinstance(ea, dict)
        or ea.get("anchor") != "created_at"
        or type(ea.get("seconds")) is not int
        or not 3600 <= ea["seconds"] <= 30 * DAY
    ):
        raise fail(
            400,
            "Invalid 'output_expires_after': anchor must be 'created_at' and seconds within "
            "[3600, 2592000].",
            param="output_expires_after",
        )
