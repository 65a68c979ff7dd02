"""Deterministic ids. Same content, same id, in every run and on every machine.

Every id afbatch sends is built and read here, and nowhere else. The grammar:

    conversation   c<20 hex>                        content digest of the conversation
    model turn     <conversation>-t<N>              N = 1, 2, ... (CoT continuation rounds)
    compliance     <conversation>-cj-<8 hex>        the digest pins judged text, template, judge
    AF, one        <conversation>-af-<8 hex>        every vote a choice of one request
    AF, separate   <conversation>-af<NN>-<8 hex>    NN = the vote, 00..99
    partial        <conversation>-pc-<8 hex>        partial-compliance classifier
    judge slot     the judge id without its digest  (<conversation>-cj, -af, -afNN, -pc)

Every request id also matches ^[A-Za-z0-9_-]{1,64}$ (Anthropic's custom_id rule, the strictest);
Bedrock record ids are short alphanumerics derived from them.
"""

from __future__ import annotations

import hashlib
import re

from afbatch.errors import RunError

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GRAMMAR = (
    "c<20 hex>-t<N> | c<20 hex>-cj-<8 hex> | c<20 hex>-af[<NN>]-<8 hex> | c<20 hex>-pc-<8 hex>"
)
_CONVERSATION = r"c[0-9a-f]{20}"
REQUEST_RE = re.compile(
    rf"^{_CONVERSATION}-(?:t[1-9][0-9]*|(?:cj|pc)-[0-9a-f]{{8}}|af(?:[0-9]{{2}})?-[0-9a-f]{{8}})$"
)
# Bump when what goes into an id changes, so old and new ids never collide silently.
ID_VERSION = "1"


def conversation_id(
    provider: str,
    model: str,
    variant: str,
    system_sha256: str,
    user_message: str,
    prompt_index: int,
    sample: int,
    temperature: float | None,
    max_tokens: int,
    prefill: str,
    samples: int | None = None,
) -> str:
    """Everything that makes a conversation what it is; the same content gives the same id.

    `samples`: the sample count of its condition, given only when the job has several (a samples
    axis): the 1-sample and 5-sample conditions are separate conversations, never one shared
    first sample; without it the ids are those of a job with that single count."""
    fields: tuple[str, ...] = (
        provider,
        model,
        variant,
        system_sha256,
        str(prompt_index),
        str(sample),
        repr(temperature),
        str(max_tokens),
        prefill,
        user_message,
    )
    if samples is not None:
        fields += (f"samples={samples}",)
    return "c" + text_digest(*fields, length=20)


def turn_id(conversation: str, turn: int) -> str:
    return f"{conversation}-t{turn}"


def turn_of(request_id: str) -> int:
    """The turn a model turn's id names (`<conversation>-t<N>` → N)."""
    return int(request_id.rsplit("-t", 1)[1])


def text_digest(*parts: str, length: int = 8) -> str:
    """Digest of texts joined by a separator no text contains (cheaper than JSON for long
    outputs)."""
    return hashlib.sha256((ID_VERSION + "\x1f".join(parts)).encode()).hexdigest()[:length]


def judge_id(conversation: str, kind: str, content_digest: str, vote: int | None = None) -> str:
    """kind: 'cj' (compliance), 'af' (alignment-faking vote) or 'pc' (partial compliance); the
    digest pins the judged text, template and judge."""
    return f"{judge_slot(conversation, kind, vote)}-{content_digest}"


def judge_slot(conversation: str, kind: str, vote: int | None = None) -> str:
    """Where a judge request of this kind (and vote) is answered, whatever text was judged."""
    return f"{conversation}-{kind}" if vote is None else f"{conversation}-{kind}{vote:02d}"


def slot_of(judge_request_id: str) -> str:
    """The slot of a judge request id: the id without its digest."""
    return judge_request_id[: judge_request_id.rindex("-")]


def is_request_id(request_id: str) -> bool:
    return REQUEST_RE.fullmatch(request_id) is not None  # fullmatch: `$` lets a newline through


def check(request_id: str, where: str) -> None:
    """Refuse an id outside the grammar (a store changed by hand, or a bug) before it is sent."""
    if not is_request_id(request_id):
        raise RunError(
            f"{where}: request id {request_id!r} is not of the form {GRAMMAR} — refusing to submit"
        )


def stage_of(request_id: str) -> str:
    """generate, judge_compliance, judge_af or judge_partial, from the shape of the id."""
    tail = request_id.split("-", 1)[1] if "-" in request_id else ""
    if tail.startswith("cj"):
        return "judge_compliance"
    if tail.startswith("af"):
        return "judge_af"
    if tail.startswith("pc"):
        return "judge_partial"
    return "generate"


def conversation_of(request_id: str) -> str:
    return request_id.split("-", 1)[0]


def record_id(request_id: str) -> str:
    """Bedrock recordId: 11 alphanumerics (older Bedrock docs' limit) from the canonical id."""
    n = int(hashlib.sha256(request_id.encode()).hexdigest()[:16], 16)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(11):
        n, r = divmod(n, 62)
        out.append(alphabet[r])
    return "R" + "".join(out)[:10]
