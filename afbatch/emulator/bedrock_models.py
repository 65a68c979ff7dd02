"""The model ids and native request bodies Bedrock takes: model families (plain ids, geo-prefixed
inference profiles, ARNs), Claude's model names, and Llama's chat-format prompts."""

from __future__ import annotations

import re
from typing import Any

GEO_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au")
# Llama 3 (<|start_header_id|>…<|end_header_id|>, <|eot_id|>) and
# Llama 4 (<|header_start|>…<|header_end|>, <|eot|>)
LLAMA_HEADER = re.compile(
    r"<\|(?:start_header_id|header_start)\|>(\w+)<\|(?:end_header_id|header_end)\|>(?:\n\n)?"
)
LLAMA_EOT = re.compile(r"<\|eot(?:_id)?\|>\s*\Z")
LLAMA_KEYS = frozenset({"prompt", "temperature", "top_p", "max_gen_len", "images"})


def model_family(model_id: str) -> str | None:
    """ "claude" | "llama" | None, for plain ids, geo-prefixed profiles (us.anthropic...) and
    ARNs."""
    base = model_id.rsplit("/", 1)[-1]
    head, _, rest = base.partition(".")
    if head in GEO_PREFIXES and "." in rest:
        base = rest
    if base.startswith("anthropic.claude"):
        return "claude"
    if base.startswith("meta.llama"):
        return "llama"
    return None


def claude_model_name(model_id: str) -> str:
    # "us.anthropic.claude-sonnet-4-5-20250929-v1:0" -> "claude-sonnet-4-5-20250929"
    base = model_id.rsplit("/", 1)[-1]
    base = base[base.index("anthropic.") + len("anthropic.") :] if "anthropic." in base else base
    return re.sub(r"-v\d+(:\d+)?$", "", base)


def llama_problem(body: dict[str, Any]) -> str | None:
    for key in body:
        if key not in LLAMA_KEYS:
            return (
                f"Malformed input request: extraneous key [{key}] is not permitted, please "
                "reformat your input."
            )
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "Malformed input request: required key [prompt] not found or empty."
    mgl = body.get("max_gen_len")
    if mgl is not None and (type(mgl) is not int or not 1 <= mgl <= 2048):
        return "Malformed input request: max_gen_len must be an integer between 1 and 2048."
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= 1):
            return f"Malformed input request: {key} must be a number between 0 and 1."
    return None


def parse_llama_prompt(prompt: str) -> tuple[str | None, list[dict[str, str]], str | None]:
    """Llama 3/4 chat format → (system, messages, prefill after the final assistant header)."""
    parts = LLAMA_HEADER.split(prompt.removeprefix("<|begin_of_text|>"))
    if len(parts) == 1:
        return None, [{"role": "user", "content": prompt}], None
    turns = list(zip(parts[1::2], parts[2::2]))
    system, messages, prefill = [], [], None
    for i, (role, content) in enumerate(turns):
        eot = LLAMA_EOT.search(content)
        closed = eot is not None
        text = content[: eot.start()] if eot else content
        if i == len(turns) - 1 and role == "assistant" and not closed:
            prefill = text or None
        elif role == "system":
            system.append(text)
        else:
            messages.append({"role": role, "content": text})
    return ("\n\n".join(system) if system else None), messages, prefill
