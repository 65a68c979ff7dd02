"""The OpenAI API's HTTP conventions as the emulator speaks them: error bodies, JSON and multipart
request bodies, integer query parameters."""

from __future__ import annotations

from email.message import Message
from typing import Any

from .web import Reject, Request, json_response

STATUS_ERRORS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def fail(status: int, message: str, code: str | None = None, param: str | None = None) -> Reject:
    type_ = STATUS_ERRORS.get(status, "server_error")
    return Reject(json_response(error_body(message, type_, code, param), status))


def json_object(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise fail(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise fail(400, "The request body must be a JSON object.")
    return body


def int_query(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise fail(400, f"Invalid '{name}': must be an integer between {lo} and {hi}.", param=name)
    return int(raw)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``multipart/form-data`` → {field: (filename, bytes)}; exact bytes, unlike the email
    parser."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise fail(400, "Expected a multipart/form-data body.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        field_name = disposition.get_param("name", header="content-disposition")
        if isinstance(field_name, str):
            fields[field_name] = (disposition.get_filename(), data.removesuffix(b"\r\n"))
    return fields
