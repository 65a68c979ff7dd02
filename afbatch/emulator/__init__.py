"""Local HTTP emulator of the OpenAI, Anthropic and Bedrock batch APIs (and Bedrock's on-demand
``InvokeModel``), for tests and demos.

The real SDKs reach it through their own variables (``emu.env()``); a responder
scripts what the "model" answers, ``emu.faults`` scripts what goes wrong::

    def responder(ctx: CallContext) -> str | Reply | RowError | Expire:
        if ctx.custom_id.endswith("-7"):
            return RowError("overloaded", "try later")        # this row fails
        return Reply("<OUTPUT><rejected/></OUTPUT>", output_tokens=12)

    with Emulator(responder, s3_endpoint=moto_url) as emu:  # S3 only for Bedrock
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        emu.faults.http("openai", "POST", r"^/v1/batches$", 429)   # next create: one 429
        emu.faults.batch("anthropic", "expired", fraction_done=0.5)  # next batch: half expire
        emu.faults.line("openai", "garbage")  # next output line: cut off mid-line (see LINE_FAULTS)
        emu.faults.http("openai", "POST", r"^/v1/batches$", 200, body="<html>…", after=True)
        # ^ the batch is created, but its answer is a proxy's HTML page
        emu.processing_delay = 0.0   # batches finish at the first read after this many seconds
        ...  # run afbatch against openai.OpenAI(), anthropic.Anthropic(), boto3.client("bedrock"),
             # boto3.client("bedrock-runtime").invoke_model(...) (on-demand, POST /model/{id}/invoke)
        assert len(emu.created) == 1 and emu.faults.pending() == []
        # emu.calls: every responder call (provider, model, custom_id); emu.invocations: the
        # InvokeModel ones, (model, "invoke-<n>")

Without a responder the emulator answers with ``DemoResponder`` (``demo.py``): a fake model
that follows the alignment-faking protocol (tiers, CoT turns, prefill) and plays the
compliance judge and the alignment-faking classifier, so ``afbatch run jobs/sample.toml``
makes a realistic-looking demo.

Provider limits are class attributes tests may lower: ``OpenAIService.MAX_REQUESTS``,
``MAX_FILE_BYTES``; ``AnthropicService.MAX_REQUESTS``, ``MAX_BODY_BYTES``;
``BedrockService.MIN_RECORDS``, ``MAX_RECORDS``, ``MAX_FILE_BYTES``.
"""

from __future__ import annotations

import threading
from typing import Callable

from .demo import DemoRates, DemoResponder, demo_responder
from .faults import BatchFault, Faults, HttpFault
from .responders import CallContext, Expire, Reply, Responder, RowError, default_responder
from .server import Emulator

__all__ = [
    "BatchFault", "CallContext", "DemoRates", "DemoResponder", "Emulator", "Expire", "Faults", "HttpFault", "Reply",
    "Responder", "RowError", "default_responder", "demo_responder", "serve",
]


def serve(host: str = "127.0.0.1", port: int = 8787, with_s3: bool = False, responder: Responder | None = None,
          *, announce: Callable[[str], None] = print, stop_event: threading.Event | None = None,
          extra_env: Callable[[str], dict[str, str]] | None = None) -> None:
    """Run the emulator in the foreground until Ctrl-C (or ``stop_event``), after announcing
    the ``export`` lines that point the SDKs at it. ``with_s3`` also starts a moto S3 server."""
    moto = None
    s3_endpoint = None
    if with_s3:
        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        moto.start()
        s3_host, s3_port = moto.get_host_and_port()
        s3_endpoint = f"http://{s3_host}:{s3_port}"
    emu = Emulator(responder=responder, s3_endpoint=s3_endpoint).start(host, port)
    try:
        announce(f"# afbatch emulator on {emu.url}" + (f", S3 (moto) on {s3_endpoint}" if s3_endpoint else ""))
        env = {**emu.env(), **(extra_env(emu.url) if extra_env else {})}
        for key, value in env.items():
            announce(f"export {key}={value}")
        (stop_event or threading.Event()).wait()  # Event.wait wakes up for Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        if moto is not None:
            moto.stop()
