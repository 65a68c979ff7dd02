"""The provider registry: what every provider must declare, and that its class is a Provider.

Adding a provider is one file (its class) and one entry in providers/registry.py; these tests say
what the entry must hold. Prices (batch multiplier, cache stacking) stay price data: every
registered provider needs a dated rule in data/prices.json.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import typing
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import pytest

from afbatch.errors import ProviderError
from afbatch.pricing import TokenFamily
from afbatch.providers import base, registry
from afbatch.providers.base import Provider, http_sdk_failures, sdk_errors
from afbatch.providers.registry import PROVIDERS, capabilities, env_names, provider_class
from afbatch.spec import ModelSpec
from afbatch.spec import Provider as JobProvider

ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
PROTOCOL_METHODS = (
    "line_id",
    "render",
    "parse",
    "ready",
    "submit",
    "find",
    "poll",
    "fetch",
    "cancel",
)
# A model each provider class can be built for (Bedrock renders Claude and Llama bodies).
MODEL_ID = {"bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0"}


def _spec(name: str) -> ModelSpec:
    info = capabilities(name)
    url = "https://llm.example.org/v1" if info.requires_base_url else None
    return ModelSpec(provider=name, model=MODEL_ID.get(name, "some-model"), base_url=url)


def _valid(info: registry.ProviderInfo, field: dataclasses.Field[typing.Any]) -> str | None:
    """Why a field's value is invalid, or None."""
    v = getattr(info, field.name)
    if field.name in ("name", "title"):
        return None if isinstance(v, str) and v else "empty"
    if field.name == "provider_class":
        return None if re.fullmatch(r"afbatch\.providers\.\w+:\w+", v) else "not module:Class"
    if field.name == "family":
        return None if v in typing.get_args(registry.Family) else f"family {v!r}"
    if field.name == "caching":
        return None if v in typing.get_args(registry.Caching) else f"caching {v!r}"
    if field.name == "limits":
        ok = isinstance(v, registry.Limits) and v.max_bytes > 0
        ok = ok and 1 <= v.min_requests <= v.max_requests
        return None if ok else f"limits {v!r}"
    if field.name in ("key_env", "base_url_env"):
        return None if v is None or ENV_NAME.match(v) else f"{field.name} {v!r}"
    if field.name == "other_env":
        ok = isinstance(v, tuple) and all(ENV_NAME.match(e) for e in v)
        return None if ok else f"other_env {v!r}"
    if field.name == "default_base_url":
        return None if v is None or v.startswith("https://") else f"default_base_url {v!r}"
    if field.name == "token_family":
        return None if v is None or v in typing.get_args(TokenFamily) else f"token_family {v!r}"
    return None if isinstance(v, bool) else f"{field.name} is not a bool"


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_provider_declares_every_capability_with_a_valid_value(name: str) -> None:
    info = PROVIDERS[name]
    assert info.name == name
    problems = [p for f in dataclasses.fields(info) if (p := _valid(info, f))]
    assert problems == []
    # Facts that must agree with each other.
    assert info.supports_prefill or not info.prefill_by_default
    assert info.caching == "explicit" or not (info.cache_by_default or info.cache_votes)
    assert not (info.requires_base_url and info.default_base_url)
    if info.family in ("openai", "anthropic", "fireworks"):  # API keys; Bedrock: the AWS chain
        assert info.key_env
    if info.default_base_url:  # afbatch reads the host's variable: it must have one
        assert info.base_url_env


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_provider_class_implements_the_protocol(name: str) -> None:
    cls = provider_class(name)
    for method in PROTOCOL_METHODS:
        want = inspect.signature(getattr(Provider, method))
        got = inspect.signature(getattr(cls, method))
        assert list(got.parameters) == list(want.parameters), (cls.__name__, method)
    p = cls(_spec(name))  # builds no client: no network, no key needed
    assert isinstance(p.name, str)
    assert p.limits == capabilities(name).limits


def test_jobs_accept_exactly_the_registered_providers() -> None:
    assert typing.get_args(JobProvider) == tuple(PROVIDERS)
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    listed = re.search(r'^provider = "\w+" +# (.+)$', readme, re.M)
    assert listed and listed.group(1).split(" | ") == list(PROVIDERS)


def test_every_provider_has_a_dated_price_rule_and_no_rule_is_orphaned() -> None:
    """Batch multiplier and cache stacking are price data, overridable by the user's price file."""
    shipped = json.loads(resources.files("afbatch").joinpath("data/prices.json").read_text())
    assert set(shipped["providers"]) == set(PROVIDERS)
    models = {m["provider"] for m in shipped["models"]}
    assert models <= set(PROVIDERS)


def test_env_names_list_every_key_and_endpoint_variable() -> None:
    names = env_names()
    assert set(names) == set(PROVIDERS)
    assert names["openai"] == ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    assert names["together"] == ("TOGETHER_API_KEY", "TOGETHER_BASE_URL")
    assert "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" in names["bedrock"]


def _modules_after(code: str) -> list[str]:
    code += "\nimport sys; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_providers_are_imported_when_used_and_sdks_when_they_connect() -> None:
    loaded = _modules_after(
        "import afbatch.cli, afbatch.spec\n"
        "from afbatch.providers import get_provider\n"
        "from afbatch.spec import ModelSpec\n"
        "get_provider(ModelSpec(provider='together', model='m'))"
    )
    assert "afbatch.providers.openai" in loaded
    assert not {"afbatch.providers.anthropic", "afbatch.providers.bedrock"} & set(loaded)
    assert not {"openai", "anthropic", "boto3"} & set(loaded)


def test_the_registry_imports_nothing_else_from_afbatch() -> None:
    """spec.py reads it while it loads: an afbatch import there would be circular."""
    package = set(_modules_after("import afbatch"))  # the package's own light start-up
    loaded = _modules_after("import afbatch.providers.registry")
    assert sorted(m for m in loaded if m.startswith("afbatch") and m not in package) == [
        "afbatch.providers",
        "afbatch.providers.registry",
    ]
    assert base.Limits is registry.Limits


def _status_error(module: typing.Any, status: int, body: object) -> BaseException:
    response = SimpleNamespace(request=None, status_code=status, headers={})  # what the SDKs read
    return module.APIStatusError("the SDK's own words", response=response, body=body)


@pytest.mark.parametrize(
    ("sdk", "body", "words"),
    [
        ("openai", {"error": {"message": "bad model"}}, "bad model"),
        ("openai", {"message": "a host's top-level words"}, "a host's top-level words"),
        ("openai", {"error": {}, "message": "beside an empty error"}, "beside an empty error"),
        ("openai", {"error": "text"}, "the SDK's own words"),
        ("anthropic", {"error": {"type": "invalid_request_error", "message": "bad"}}, "bad"),
        ("anthropic", {"message": "top-level"}, "the SDK's own words"),
    ],
)
def test_one_translator_for_both_http_sdks(sdk: str, body: object, words: str) -> None:
    module = pytest.importorskip(sdk)
    model = ModelSpec(provider=sdk, model="m", label="lbl")
    translate = http_sdk_failures(sdk, top_level_message=sdk == "openai")
    with pytest.raises(ProviderError) as ei, sdk_errors(translate, model, "create batch"):
        raise _status_error(module, 400, body)
    assert str(ei.value) == f"{sdk} create batch for lbl: HTTP 400: {words}"
    assert ei.value.rejects_request and not ei.value.retryable
    with pytest.raises(ProviderError) as ei, sdk_errors(translate, model, "list"):
        raise _status_error(module, 503, body)
    assert ei.value.retryable and not ei.value.rejects_request
    with pytest.raises(KeyError), sdk_errors(translate, model, "list"):  # not the SDK's: untouched
        raise KeyError("x")


def test_the_readme_names_every_key_and_endpoint_variable() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Against the real providers", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section))
    hosts = {capabilities(n).base_url_env for n in PROVIDERS if capabilities(n).default_base_url}
    # The hosts' base-URL variables are named by one example ("and likewise per host").
    wanted = {v for vs in env_names().values() for v in vs} - hosts
    assert wanted - named == set()
