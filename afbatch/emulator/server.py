"""The ``Emulator``: one threaded HTTP server for every provider's batch API."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .anthropic import AnthropicService
from .bedrock import BedrockService
from .demo import DemoResponder
from .faults import Faults, HttpFault
from .fireworks import FireworksService
from .gemini import PREFIX as GEMINI_PREFIX
from .gemini import GeminiService
from .mistral import MistralService
from .openai import OpenAIService
from .responders import Responder
from .vertex import LOCATION as VERTEX_LOCATION
from .vertex import PROJECT as VERTEX_PROJECT
from .vertex import VertexService
from .vertex_gcs import GcsService
from .web import Handler, Reject, Request, Response, Service, json_response
from .xai import XAIService

log = logging.getLogger("afbatch.emulator")


class Emulator:
    """Local stand-in for the provider batch APIs, reached by the real SDKs over HTTP.

    Batches are processed lazily: the first read (retrieve, list, cancel) after
    ``processing_delay`` seconds runs every row through ``responder`` and moves the
    batch to its terminal state; before that it reports in-progress states. A batch
    waits min(delay when created, current delay): lowering the delay releases
    pending batches, raising it only affects new ones. ``shuffle_results`` scrambles
    result order (deterministically), as no provider promises input order.

    Without a ``responder``, a fresh ``DemoResponder`` answers (a protocol-aware fake model
    with compliance and alignment-faking judges; see ``demo.py``). ``calls`` lists every
    responder call as (provider, model, custom_id); ``invocations`` the on-demand Bedrock
    ``InvokeModel`` calls among them as (model, custom_id).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        s3_endpoint: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.responder: Responder = responder or DemoResponder()
        self.s3_endpoint = s3_endpoint
        self.region = region
        self.processing_delay = 0.0
        self.shuffle_results = True  # no provider guarantees result order; neither do we
        self.faults = Faults()
        self.created: list[tuple[str, str, str | None, int | None]] = []
        self.calls: list[tuple[str, str, str]] = []
        self.invocations: list[tuple[str, str]] = []  # Bedrock InvokeModel: (model, custom_id)
        self.errors: list[
            BaseException
        ] = []  # responder crashes and emulator bugs, for tests to assert on
        self.lock = threading.RLock()
        self._seq = 0
        self._s3: Any = None
        self.openai = OpenAIService(self)
        self.anthropic = AnthropicService(self)
        self.bedrock = BedrockService(self)
        self.gemini = GeminiService(self)
        self.mistral = MistralService(self)  # under /mistral/v1/...
        self.xai = XAIService(self)  # under /xai/v1: its /v1/batches differ from OpenAI's
        self.fireworks = FireworksService(self)  # under /fireworks
        self.vertex = VertexService(self)  # under /vertex, with its OAuth token endpoint
        self.gcs = GcsService(self)  # under /gcs: Vertex AI's Cloud Storage
        # Anthropic first: its routes sit under /v1 too
        self.services = (
            self.anthropic,
            self.openai,
            self.bedrock,
            self.gemini,
            self.mistral,
            self.xai,
            self.fireworks,
            self.vertex,
            self.gcs,
        )
        self._routes = [
            (svc, method, re.compile(rx), fn)
            for svc in self.services
            for method, rx, fn in svc.routes()
        ]
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.emulator = self  # type: ignore[attr-defined]
        # a short poll interval keeps stop() (and so every test teardown) fast
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="afbatch-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.vertex.close()  # its credentials file
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self if self._httpd else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        bound, port = self._httpd.server_address[:2]
        host = bound.decode() if isinstance(bound, bytes) else str(bound)
        if host in ("0.0.0.0", "::", ""):  # bound to every interface: hand out the loopback address
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """The variables that point the SDKs at this emulator (and at S3, when given)."""
        env = {
            "OPENAI_BASE_URL": self.url + "/v1",
            "ANTHROPIC_BASE_URL": self.url,
            "AWS_ENDPOINT_URL_BEDROCK": self.url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.url,
            "OPENAI_API_KEY": "emulator-key",
            "ANTHROPIC_API_KEY": "emulator-key",
            "GOOGLE_GEMINI_BASE_URL": self.url + GEMINI_PREFIX,
            "GEMINI_API_KEY": "emulator-key",
            "MISTRAL_BASE_URL": self.url + "/mistral",
            "MISTRAL_API_KEY": "emulator-key",
            "XAI_BASE_URL": self.url + "/xai/v1",
            "XAI_API_KEY": "emulator-key",
            "FIREWORKS_BASE_URL": self.url + "/fireworks",
            "FIREWORKS_API_KEY": "emulator-key",
            "FIREWORKS_ACCOUNT_ID": "emulator",
            "GOOGLE_VERTEX_BASE_URL": self.url + "/vertex",
            "STORAGE_EMULATOR_HOST": self.url + "/gcs",
            "GOOGLE_APPLICATION_CREDENTIALS": self.vertex.credentials_file(),
            "GOOGLE_CLOUD_PROJECT": VERTEX_PROJECT,
            "GOOGLE_CLOUD_LOCATION": VERTEX_LOCATION,
        }
        if self.s3_endpoint:
            env.update(
                {
                    "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": self.region,
                }
            )
        return env

    def reset(self) -> None:
        """Forget every batch, file, fault and call (the server keeps running); a responder
        with a ``reset()`` method (``DemoResponder``: its judge attempt counters) is reset too."""
        with self.lock:
            for svc in self.services:
                svc.reset()
            self.faults.clear()
            self.created.clear()
            self.calls.clear()
            self.invocations.clear()
            self.errors.clear()
            reset = getattr(self.responder, "reset", None)
            if callable(reset):
                reset()

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    def s3_client(self) -> Any:
        """boto3 S3 client for Bedrock's input/output, or None when no local S3 is configured.

        ``AWS_ENDPOINT_URL_S3`` applies when no ``s3_endpoint`` was given; without either
        we refuse rather than let a test reach the real AWS.
        """
        with self.lock:
            if self._s3 is None:
                if not (self.s3_endpoint or os.environ.get("AWS_ENDPOINT_URL_S3")):
                    return None
                import boto3  # only Bedrock needs it

                kwargs: dict[str, Any] = {"region_name": self.region}
                if self.s3_endpoint:
                    kwargs.update(
                        endpoint_url=self.s3_endpoint,
                        aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                    )
                self._s3 = boto3.session.Session().client("s3", **kwargs)
            return self._s3

    # ---------------------------------------------------------------- dispatch

    def handle(self, req: Request) -> Response:
        svc, fn, params = self._match(req.method, req.path)
        fault = self.faults.take_http(svc.name, req.method, req.path)
        if fault is not None:
            if fault.delay > 0:
                time.sleep(fault.delay)
            if fault.status is not None and not fault.after:
                return _fault_response(svc, fault)  # no request id: like a proxy/gateway error
        denied = svc.authenticate(req)
        if denied is not None:
            return denied
        if fn is None:
            return svc.error(404, f"Unknown route: {req.method} {req.path}")
        try:
            resp = fn(req, **params)
        except Reject as rej:
            resp = rej.response
        except Exception as exc:  # an emulator bug: answer 500 and keep it for the tests
            log.exception("emulator error on %s %s", req.method, req.path)
            self.errors.append(exc)
            resp = svc.error(500, f"Emulator internal error: {type(exc).__name__}: {exc}")
        resp.headers = {**svc.headers(), **resp.headers}  # request ids, as the real services send
        if fault is not None and fault.after and fault.status is not None:
            return _fault_response(svc, fault)  # the work is done; a gateway mangled the answer
        return resp

    def _match(self, method: str, path: str) -> tuple[Service, Handler | None, dict[str, str]]:
        for svc, m, rx, fn in self._routes:
            hit = rx.fullmatch(path)
            if hit and m == method:
                return svc, fn, {k: unquote(v) for k, v in hit.groupdict().items()}
        if path.startswith("/mistral/"):
            return self.mistral, None, {}
        if path.startswith("/v1/messages"):
            return self.anthropic, None, {}
        if path.startswith(GEMINI_PREFIX + "/"):
            return self.gemini, None, {}
        if path.startswith("/xai/"):
            return self.xai, None, {}
        if path.startswith("/fireworks/"):
            return self.fireworks, None, {}
        if path.startswith("/vertex/"):
            return self.vertex, None, {}
        if path.startswith("/gcs/"):
            return self.gcs, None, {}
        return (self.openai if path.startswith("/v1/") else self.bedrock), None, {}


def _fault_response(svc: Service, fault: HttpFault) -> Response:
    assert fault.status is not None
    if fault.body is None:
        resp = svc.error(fault.status, f"Injected fault: HTTP {fault.status}.")
    elif isinstance(fault.body, (dict, list)):
        resp = json_response(fault.body, fault.status)
    else:
        data = fault.body.encode() if isinstance(fault.body, str) else bytes(fault.body)
        html = data.lstrip().startswith(b"<")
        resp = Response(fault.status, data, "text/html" if html else "text/plain")
    resp.headers.update(fault.headers)
    return resp


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    disable_nagle_algorithm = True  # else Nagle + delayed ACK add ~40 ms to every response
    wbufsize = -1  # headers and body leave in one write (flushed by handle_one_request)
    server_version = "afbatch-emulator/0.1"

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _address(self) -> str:
        address = self.server.server_address
        assert isinstance(address, tuple)  # a TCP server: (host, port)
        return f"{address[0]}:{address[1]}"

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
            base_url=f"http://{self.headers.get('host') or self._address()}",
        )
        resp = self.server.emulator.handle(req)  # type: ignore[attr-defined]
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)
