"""A model of the job (generation, judge or AF classifier): provider, sampling overrides, cache,
connection, pricing; its label and the provider's rules, read from providers/registry.py."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from afbatch.providers.registry import NAMES, capabilities, names_where
from afbatch.spec_base import LABEL_RE, Strict

# Providers afbatch can submit to: the names of providers/registry.py, in its order.
Provider = Literal[NAMES]  # type: ignore[valid-type]


class ModelSpec(Strict):
    """One model to evaluate (or the judge model)."""

    provider: Provider
    model: str = Field(min_length=1, description="The provider's model id.")
    label: str | None = Field(
        None, pattern=LABEL_RE, description="Short unique name used in ids, tables, reports."
    )
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    prefill: bool | None = Field(
        None, description="Send the variant's prefill. Default: yes except OpenAI/xAI."
    )
    cache: bool | None = Field(
        None,
        description="Mark the system prompt as a prompt-cache breakpoint (Anthropic; default on).",
    )
    cache_ttl: Literal["5m", "1h"] = Field(
        "1h", description="Anthropic cache TTL; 1h is recommended for batches."
    )
    base_url: str | None = Field(None, description="API base URL (OpenAI-compatible hosts).")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="Env var holding the API key."
    )
    region: str | None = Field(None, description="AWS region (Bedrock).")
    role_arn: str | None = Field(
        None, description="IAM service role Bedrock assumes to read/write S3."
    )
    s3_uri: str | None = Field(
        None, pattern=r"^s3://[^/]+(/.*)?$", description="s3://bucket/prefix for Bedrock I/O."
    )
    gcs_uri: str | None = Field(
        None, pattern=r"^gs://[^/]+(/.*)?$", description="gs://bucket/prefix for Vertex AI I/O."
    )
    project: str | None = Field(
        None, description="Google Cloud project (Vertex AI); else $GOOGLE_CLOUD_PROJECT or ADC's."
    )
    location: str | None = Field(
        None, description="Google Cloud location (Vertex AI); else $GOOGLE_CLOUD_LOCATION."
    )
    on_demand_fallback: bool = Field(
        False,
        description=(
            "Bedrock: send rows that cannot form a >=100-record job as on-demand "
            "calls (sync price)."
        ),
    )
    price_as: str | None = Field(
        None, description="Price this model as another model id of the same provider."
    )
    token_factor: float | None = Field(
        None, gt=0, description="Override the tokenizer calibration factor."
    )

    @property
    def name(self) -> str:
        return self.label or default_label(self.model)

    @property
    def allows_prefill(self) -> bool:
        if self.prefill is not None:
            return self.prefill
        return capabilities(self.provider).prefill_by_default

    @property
    def uses_cache(self) -> bool:
        if self.cache is not None:
            return self.cache
        return capabilities(self.provider).cache_by_default

    @model_validator(mode="after")
    def _provider_rules(self) -> ModelSpec:
        info = capabilities(self.provider)
        if self.prefill and not info.supports_prefill:
            raise ValueError(
                f"{info.title} models do not accept an assistant prefill; remove `prefill = true`"
            )
        if info.requires_base_url and not self.base_url:
            raise ValueError(
                f"provider {self.provider!r} needs `base_url` (and usually `api_key_env`)"
            )
        if self.cache and info.caching != "explicit":
            how = "caches automatically" if info.caching == "automatic" else "has no prompt cache"
            explicit = " and ".join(names_where(caching="explicit"))
            raise ValueError(f"`cache` is only configurable for {explicit}; {self.provider} {how}")
        return self


def default_label(model_id: str) -> str:
    """A short label from a model id: last path segment, unsafe characters replaced."""
    tail = model_id.rstrip("/").split("/")[-1]
    tail = re.sub(r"[^A-Za-z0-9._-]", "-", tail).strip("-._") or "model"
    return tail[:48]
