"""The output the emulated Bedrock writes to S3: one ``.out`` file per input file (records never
reached are absent) and the job's ``manifest.json.out``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .anthropic_output import claude_message
from .batches import Outcome, Row, openai_finish_reason, shuffled
from .bedrock_input import split_uri
from .bedrock_models import claude_model_name, model_family

if TYPE_CHECKING:
    from .bedrock import BedrockJob, BedrockService

ROW_ERROR_CODES = {
    "invalid_request": 400,
    "rate_limit": 429,
    "overloaded": 503,
    "server_error": 500,
    "auth": 403,
}


def write_output(
    svc: BedrockService, j: BedrockJob, files: list[tuple[str, list[Row]]], outcomes: list[Outcome]
) -> None:
    """Each input file's results beside it in S3 (``<name>.out``), and the job's
    ``manifest.json.out``."""
    by_id = {o.row.custom_id: o for o in outcomes}
    family = model_family(j.request["modelId"])
    bucket, prefix = split_uri(j.request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
    base = f"{prefix.rstrip('/')}/{j.id}/" if prefix.strip("/") else f"{j.id}/"
    s3 = svc.s3()
    for name, rows in files:
        lines = []
        for o in shuffled([by_id[r.custom_id] for r in rows], j.id, svc.emu):
            line = output_line(family, j.request["modelId"], o)
            if line is not None:
                lines.append(svc.emu.faults.render_line("bedrock", line, ("modelOutput",)))
        s3.put_object(
            Bucket=bucket, Key=f"{base}{name}.out", Body=("\n".join(lines) + "\n").encode()
        )
    done = [o for o in outcomes if o.status in ("succeeded", "errored")]
    ok = [o for o in done if o.status == "succeeded"]
    j.counts = {
        "totalRecordCount": len(outcomes),
        "processedRecordCount": len(done),
        "successRecordCount": len(ok),
        "errorRecordCount": len(done) - len(ok),
    }
    manifest = {
        **j.counts,
        "inputTokenCount": sum(o.usage.input for o in ok if o.usage),
        "outputTokenCount": sum(o.usage.output for o in ok if o.usage),
    }
    s3.put_object(Bucket=bucket, Key=f"{base}manifest.json.out", Body=json.dumps(manifest).encode())


def output_line(family: str | None, model_id: str, o: Outcome) -> dict[str, Any] | None:
    if o.status in ("expired", "canceled"):
        return None  # never reached: absent from the output
    line = {"recordId": o.row.custom_id, "modelInput": o.row.source["modelInput"]}
    if o.status == "errored":
        assert o.error is not None
        return {
            **line,
            "error": {"errorCode": ROW_ERROR_CODES[o.error.kind], "errorMessage": o.error.message},
        }
    assert o.reply is not None and o.usage is not None
    if family == "claude":
        return {**line, "modelOutput": claude_message("msg_bdrk_", claude_model_name(model_id), o)}
    return {
        **line,
        "modelOutput": {
            "generation": o.reply.text,
            "prompt_token_count": o.usage.input,
            "generation_token_count": o.usage.output,
            "stop_reason": openai_finish_reason(o.reply.stop_reason),
        },
    }
