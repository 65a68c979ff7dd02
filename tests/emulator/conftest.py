"""Fixtures: a fresh emulator per test, one moto S3 server per session, real SDK clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from afbatch.emulator import Emulator


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> Iterator[Emulator]:
    # keep the developer's own AWS/OpenAI/Anthropic settings out of the way
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "OPENAI_CUSTOM_HEADERS",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/afbatch-test-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/afbatch-test-credentials")
    with Emulator(s3_endpoint=moto_s3) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        yield e
        assert e.errors == [], f"emulator/responder errors: {e.errors!r}"


@pytest.fixture
def oai(emu: Emulator) -> Any:
    import openai

    return openai.OpenAI(max_retries=0, _strict_response_validation=True)


@pytest.fixture
def claude(emu: Emulator) -> Any:
    import anthropic

    return anthropic.Anthropic(max_retries=0, _strict_response_validation=True)


@pytest.fixture
def s3(emu: Emulator) -> Any:
    import boto3

    return boto3.client("s3")


@pytest.fixture
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    name = "afb-" + request.node.name.lower().replace("_", "-")[:40].strip("-[]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bedrock(emu: Emulator) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
