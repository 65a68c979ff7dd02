"""Gemini request lines as generateContent reads them, and result lines as the batch writes them
(shared by the emulated batch service, gemini.py)."""

from __future__ import annotations

from typing import Any

from .batches import Outcome, rand_id
from .responders import CallContext

# RowError kind -> (google.rpc.Code, status name)
ROW_ERRORS = {
    "invalid_request": (3, "INVALID_ARGUMENT"),
    "rate_limit": (8, "RESOURCE_EXHAUSTED"),
    "overloaded": (14, "UNAVAILABLE"),
    "server_error": (13, "INTERNAL"),
    "auth": (7, "PERMISSION_DENIED"),
}
REQUEST_FIELDS = {
    "contents",
    "system_instruction",
    "systemInstruction",
    "generation_config",
    "generationConfig",
    "safety_settings",
    "safetySettings",
    "cached_content",
    "cachedContent",
    "tools",
    "tool_config",
    "toolConfig",
    "model",
}
CONFIG_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "topP": (0.0, 1.0)}
CONFIG_INTS = {
    "max_output_tokens",
    "maxOutputTokens",
    "candidate_count",
    "candidateCount",
    "top_k",
    "topK",
    "seed",
}
CONFIG_OTHER = {
    "stop_sequences",
    "stopSequences",
    "thinking_config",
    "thinkingConfig",
    "response_mime_type",
    "responseMimeType",
    "presence_penalty",
    "frequency_penalty",
}
NO_TRAILING_MODEL = "Requests ending with a model turn are not supported."
FINISH = {
    "end_turn": "STOP",
    "stop": "STOP",
    "stop_sequence": "STOP",
    "max_tokens": "MAX_TOKENS",
    "length": "MAX_TOKENS",
}


def result_line(model: str, o: Outcome) -> dict[str, Any]:
    """The output line of one answered row: its response, or its google.rpc.Status."""
    if o.status == "errored":
        assert o.error is not None
        code, status = ROW_ERRORS[o.error.kind]
        return {
            "key": o.row.custom_id,
            "status": {"code": code, "message": o.error.message, "status": status},
        }
    assert o.reply is not None and o.usage is not None
    u = o.usage
    usage: dict[str, Any] = {
        "promptTokenCount": u.input,
        "candidatesTokenCount": u.output,
        "totalTokenCount": u.input + u.output,
    }
    if u.cache_read:  # implicit caching: reads only, never a billed write
        usage["cachedContentTokenCount"] = u.cache_read
    candidate = {
        "content": {"parts": [{"text": o.reply.text}], "role": "model"},
        "finishReason": FINISH.get(o.reply.stop_reason, o.reply.stop_reason.upper()),
        "index": 0,
    }
    return {
        "key": o.row.custom_id,
        "response": {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": rand_id("", 20),
        },
    }


def inline_result(model: str, o: Outcome) -> dict[str, Any]:
    """An inline response: the line's response or error, with its request's metadata."""
    line = result_line(model, o)
    out: dict[str, Any] = {"metadata": o.row.source} if o.row.source else {}
    if "status" in line:
        out["error"] = line["status"]
    else:
        out["response"] = line["response"]
    return out


def _text(content: Any, where: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"{where}.parts: a non-empty list is required")
    texts = []
    for i, p in enumerate(parts):
        if not isinstance(p, dict) or set(p) != {"text"} or not isinstance(p["text"], str):
            raise ValueError(f"{where}.parts[{i}]: the emulator supports text parts only")
        texts.append(p["text"])
    return "".join(texts)


def request_problem(request: Any) -> str | None:
    """What generateContent would refuse in one request (HTTP 400 for that line), or None."""
    if not isinstance(request, dict):
        return "request: must be a GenerateContentRequest object"
    for k in request:
        if k not in REQUEST_FIELDS:
            return (
                f"Invalid JSON payload received. Unknown name \"{k}\" at 'request': "
                "Cannot find field."
            )
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "contents is not specified"
    try:
        for i, c in enumerate(contents):
            if not isinstance(c, dict) or c.get("role") not in ("user", "model"):
                return f"contents[{i}].role: Please use a valid role: user, model."
            _text(c, f"contents[{i}]")
        system = request.get("system_instruction", request.get("systemInstruction"))
        if system is not None:
            _text(system, "system_instruction")
    except ValueError as e:
        return str(e)
    if contents[-1]["role"] == "model":
        return NO_TRAILING_MODEL
    config = request.get("generation_config", request.get("generationConfig")) or {}
    if not isinstance(config, dict):
        return "generation_config: must be an object"
    for k, v in config.items():
        if k in CONFIG_RANGES:
            lo, hi = CONFIG_RANGES[k]
            if type(v) not in (int, float) or not lo <= v <= hi:
                return f"generation_config.{k}: must be a number in [{lo}, {hi}]"
        elif k in CONFIG_INTS:
            if type(v) is not int or v < 1:
                return f"generation_config.{k}: must be a positive integer"
        elif k not in CONFIG_OTHER:
            return (
                f'Invalid JSON payload received. Unknown name "{k}" at '
                "'request.generation_config': Cannot find field."
            )
    return None


def context(model: str, key: str, request: dict[str, Any]) -> CallContext:
    """A validated request as the responder sees it (model turns as "assistant")."""
    system = request.get("system_instruction", request.get("systemInstruction"))
    messages = [
        {"role": "assistant" if c["role"] == "model" else "user", "content": _text(c, "contents")}
        for c in request["contents"]
    ]
    config = request.get("generation_config", request.get("generationConfig")) or {}
    return CallContext(
        "gemini",
        model,
        key,
        None if system is None else _text(system, "system"),
        messages,
        None,
        dict(config),
        None,
    )
