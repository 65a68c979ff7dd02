"""What a Messages API body may hold, checked as the real API does, and the responder's
CallContext read from it; shared by the Anthropic batch service and Bedrock's Claude (batch and
InvokeModel)."""

from __future__ import annotations

import re
from typing import Any

from .batches import text_of
from .responders import CallContext

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
