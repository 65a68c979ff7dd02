"""Shared constants for tests (conftest.py names clash across test folders; this module does
not)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"

BASE_JOB = """
name = "t"

[dataset]
source = "data.csv"

[prompts]
user_template = "user_template.txt"

[[variants]]
name = "cot"
system_prompt = "helpful_only_cot.txt"
cot = true

[[variants]]
name = "no_cot"
system_prompt = "helpful_only_no_cot.txt"
cot = false

[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
label = "haiku"
"""
