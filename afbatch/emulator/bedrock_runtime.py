"""The emulated bedrock-runtime: on-demand ``InvokeModel`` (``POST /model/{modelId}/invoke``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .anthropic_input import claude_context, params_problem
from .anthropic_output import claude_message
from .batches import Outcome, Row, openai_finish_reason
from .bedrock_http import fail
from .bedrock_models import claude_model_name, llama_problem, model_family, parse_llama_prompt
from .bedrock_output import ROW_ERROR_CODES
from .responders import CallContext, Expire, RowError, answer_row
from .web import Request, Response, json_response

if TYPE_CHECKING:
    from .bedrock import BedrockService


def invoke(svc: BedrockService, req: Request, model: str) -> Response:
    """On-demand ``InvokeModel``: the body is validated like a batch record's ``modelInput``,
    answered by the responder (``custom_id`` "invoke-<n>", ``batch_id`` None) and returned as
    the model's native response body; a ``RowError`` becomes the matching HTTP error and an
    ``Expire`` a ServiceUnavailableException (there is no completion window on-demand)."""
    family = model_family(model)
    if family is None:
        raise fail(
            400,
            f"The provided model identifier '{model}' is invalid or not supported by the emulator "
            "(anthropic.* and meta.llama* models).",
        )
    ctype = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise fail(400, f"Content type {ctype!r} is not supported: use application/json.")
    accept = req.headers.get("accept", "application/json").split(";")[0].strip().lower()
    if accept not in ("application/json", "*/*", ""):
        raise fail(400, f"Accept type {accept!r} is not supported: use application/json.")
    try:
        body = req.json()
    except ValueError:
        raise fail(
            400, "Malformed input request, please reformat your input and try again."
        ) from None
    if not isinstance(body, dict):
        raise fail(
            400,
            "Malformed input request: the body must be a JSON object, please reformat your input.",
        )
    with svc.emu.lock:
        svc.invoke_seq += 1
        cid = f"invoke-{svc.invoke_seq}"
    ttl = None
    if family == "claude":
        problem = params_problem(body, bedrock=True, model=claude_model_name(model))
        if problem:
            raise fail(
                400,
                f"Malformed input request: {problem}, please reformat your input and try again.",
            )
        ctx, ttl = claude_context("bedrock", cid, {**body, "model": model}, None)
    else:
        problem = llama_problem(body)
        if problem:
            raise fail(400, problem)
        system, messages, prefill = parse_llama_prompt(body["prompt"])
        ctx = CallContext(
            "bedrock",
            model,
            cid,
            system,
            messages,
            prefill,
            {k: v for k, v in body.items() if k != "prompt"},
            None,
        )
    started = time.time()
    ans = answer_row(svc.emu.responder, ctx, svc.emu.errors)  # outside the lock: calls may overlap
    with svc.emu.lock:
        svc.emu.calls.append(("bedrock", model, cid))
        svc.emu.invocations.append((model, cid))
        if isinstance(ans, (Expire, RowError)):
            if isinstance(ans, Expire):
                raise fail(
                    503,
                    "The model is currently unavailable (the responder returned Expire()). "
                    "Try your request again.",
                    "ServiceUnavailableException",
                )
            raise fail(ROW_ERROR_CODES[ans.kind], ans.message)
        usage = svc.invoke_cache.usage(ctx, ans, ttl is not None)
    outcome = Outcome(
        Row(cid, ctx, cache_marked=ttl is not None, source={"ttl": ttl}),
        "succeeded",
        reply=ans,
        usage=usage,
    )
    if family == "claude":
        out = claude_message("msg_bdrk_", claude_model_name(model), outcome)
    else:
        out = {
            "generation": ans.text,
            "prompt_token_count": usage.input,
            "generation_token_count": usage.output,
            "stop_reason": openai_finish_reason(ans.stop_reason),
        }
    return json_response(
        out,
        headers={
            "X-Amzn-Bedrock-Input-Token-Count": str(usage.input),
            "X-Amzn-Bedrock-Output-Token-Count": str(usage.output),
            "X-Amzn-Bedrock-Invocation-Latency": str(int((time.time() - started) * 1000)),
        },
    )
