"""Local HTTP emulator of the OpenAI, Anthropic, Bedrock, Gemini, Vertex AI, Mistral, xAI and
Fireworks batch APIs (and Bedrock's on-demand ``InvokeModel``), for tests and demos.

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
             # boto3.client("bedrock-runtime").invoke_model(...)
             #   (on-demand, POST /model/{id}/invoke)
        assert len(emu.created) == 1 and emu.faults.pending() == []
        # emu.calls: every responder call (provider, model, custom_id); emu.invocations: the
        # InvokeModel ones, (model, "invoke-<n>")

Without a responder the emulator answers with ``DemoResponder`` (``demo.py``): a fake model
that follows the alignment-faking protocol (tiers, CoT turns, prefill) and plays the
compliance judge and the alignment-faking classifier, so ``afbatch run jobs/sample.toml``
makes a realistic-looking demo.

Provider limits are class attributes tests may lower: ``OpenAIService.MAX_REQUESTS``,
``MAX_FILE_BYTES``; ``AnthropicService.MAX_REQUESTS``, ``MAX_BODY_BYTES``;
``BedrockService.MIN_RECORDS``, ``MAX_RECORDS``, ``MAX_FILE_BYTES``;
``GeminiService.MAX_FILE_BYTES``, ``MAX_INLINE_BYTES``;
``MistralService.MAX_REQUESTS``, ``MAX_FILE_BYTES``;
``FireworksService.MAX_UPLOAD_BYTES``, ``MAX_DATASET_BYTES``;
``VertexService.MAX_REQUESTS``, ``MAX_FILE_BYTES``, ``LINES_PER_FILE``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from afbatch.errors import InputError

from .demo import DemoRates, DemoResponder, demo_responder
from .faults import BatchFault, Faults, HttpFault
from .responders import CallContext, Expire, Reply, Responder, RowError, default_responder
from .server import Emulator

__all__ = [
    "BatchFault",
    "CallContext",
    "DemoRates",
    "DemoResponder",
    "Emulator",
    "Expire",
    "Faults",
    "HttpFault",
    "Reply",
    "Responder",
    "RowError",
    "default_responder",
    "demo_responder",
    "serve",
]


EMULATOR_KEY = "emulator-key"


def sdk_env(emu: Emulator) -> dict[str, str]:
    """Every variable that points afbatch's providers at `emu`: the SDKs' base URLs and emulator
    keys, the OpenAI-compatible hosts' (from the provider registry: they reach the same emulated
    Batches API), and AFBATCH_EMULATOR (which makes a job's own base_url and api_key_env give way;
    see providers.get_provider)."""
    from afbatch.providers.registry import PROVIDERS

    env = {**emu.env(), "AFBATCH_EMULATOR": emu.url}
    for info in PROVIDERS.values():
        if info.family == "openai" and info.default_base_url and info.base_url_env and info.key_env:
            env.setdefault(info.base_url_env, emu.url + "/v1")
            env.setdefault(info.key_env, EMULATOR_KEY)
    return env


def start_s3(host: str = "127.0.0.1") -> Any:
    """A moto S3 server on a free port (Bedrock batch uses S3); one line when moto is missing."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise InputError(
            "the emulated Bedrock needs an S3 server from moto, which is not "
            "installed — pip install 'moto[server]' (or afbatch's test extras: "
            "pip install -e '.[test]')"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per S3 request on the terminal
    moto = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    moto.start()
    return moto


def _url(moto: Any) -> str | None:
    if moto is None:
        return None
    s3_host, s3_port = moto.get_host_and_port()
    return f"http://{s3_host}:{s3_port}"


def start(
    host: str, port: int, s3_endpoint: str | None = None, responder: Responder | None = None
) -> Emulator:
    try:
        return Emulator(responder=responder, s3_endpoint=s3_endpoint).start(host, port)
    except OSError as e:
        raise InputError(
            f"the emulator cannot listen on {host}:{port}: {e.strerror or e} — pass "
            "another --port (--port 0 picks a free one)"
        ) from None


def write_env_file(path: str, env: dict[str, str]) -> None:
    """Write the export lines at once (a reader never sees half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    os.replace(tmp, path)


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    with_s3: bool = False,
    responder: Responder | None = None,
    *,
    announce: Callable[[str], None] = print,
    stop_event: threading.Event | None = None,
    env_file: str | None = None,
) -> None:
    """Run the emulator in the foreground until Ctrl-C (or ``stop_event``), after announcing
    the ``export`` lines that point the SDKs at it (and writing them to ``env_file``, removed at
    the end). ``with_s3`` also starts a moto S3 server. Nothing is announced or written unless
    every server is up."""
    moto = start_s3(host) if with_s3 else None
    emu = None
    try:
        s3_endpoint = _url(moto)
        emu = start(host, port, s3_endpoint, responder)
        env = sdk_env(emu)
        if env_file:
            write_env_file(env_file, env)
        announce(
            f"# afbatch emulator on {emu.url}"
            + (f", S3 (moto) on {s3_endpoint}" if s3_endpoint else "")
        )
        for key, value in env.items():
            announce(f"export {key}={shlex.quote(value)}")
        (stop_event or threading.Event()).wait()  # Event.wait wakes up for Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        if env_file and emu is not None:
            with contextlib.suppress(OSError):
                os.remove(env_file)
        if emu is not None:
            emu.stop()
        if moto is not None:
            moto.stop()


# Real AWS settings that would otherwise mix with the emulator's test credentials and endpoints.
_AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ENDPOINT_URL",
)


@contextlib.contextmanager
def emulating(models: Iterable[Any]) -> Iterator[Emulator]:
    """For `afbatch run --emulator`: start the emulator on a free port (and moto S3, with the job's
    buckets, when a model is on Bedrock), point this process's SDK variables at it, and at the end
    restore the environment and stop the servers. Nothing this process sends can reach a real
    provider meanwhile."""
    models = list(models)
    bedrock = [m for m in models if m.provider == "bedrock"]
    moto = start_s3() if bedrock else None
    saved = dict(os.environ)
    emu = None
    try:
        s3_endpoint = _url(moto)
        emu = start("127.0.0.1", 0, s3_endpoint)
        if bedrock:
            for key in _AWS_UNSET:
                os.environ.pop(key, None)
        os.environ.update(sdk_env(emu))
        if s3_endpoint:
            s3 = emu.s3_client()
            buckets = {m.s3_uri.removeprefix("s3://").split("/")[0] for m in bedrock if m.s3_uri}
            for bucket in sorted(buckets):
                s3.create_bucket(Bucket=bucket)
        for m in models:  # Vertex AI's Cloud Storage buckets, in the emulator itself
            if m.provider == "vertex" and m.gcs_uri:
                emu.gcs.buckets.add(m.gcs_uri.removeprefix("gs://").split("/")[0])
        yield emu
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if emu is not None:
            emu.stop()
        if moto is not None:
            moto.stop()
