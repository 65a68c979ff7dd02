"""Reading and writing JSON lines (results of every provider go through here)."""

from __future__ import annotations

import pytest

from afbatch import jsonl
from afbatch.providers.openai import OpenAIProvider
from afbatch.spec import ModelSpec


def test_a_lone_surrogate_becomes_a_replacement_character():
    line = b'{"custom_id": "c1-t1", "text": "cut emoji \\ud83d here", "list": ["\\udc00"]}'
    d = jsonl.loads(line)
    assert d == {"custom_id": "c1-t1", "text": "cut emoji \ufffd here", "list": ["\ufffd"]}
    assert jsonl.loads(jsonl.dumps(d)) == d  # and it can be stored again


def test_a_valid_surrogate_pair_is_kept():
    assert jsonl.loads(b'{"t": "\\ud83c\\udf89"}') == {"t": "🎉"}


@pytest.mark.parametrize("bad", [b'{"t": ', b"not json", b'{"t": "\\ud83d"'])
def test_malformed_json_still_raises(bad):
    with pytest.raises(ValueError):
        jsonl.loads(bad)


def test_an_openai_row_with_a_cut_emoji_is_collected():
    provider = OpenAIProvider(ModelSpec(provider="openai", model="gpt-4o-mini"))
    line = (
        b'{"id": "batch_req_1", "custom_id": "c1-t1", "response": {"status_code": 200, "body": '
        b'{"choices": '
        b'[{"index": 0, "message": {"role": "assistant", "content": "ok \\ud83d"}, '
        b'"finish_reason": "length"}], '
        b'"usage": {"prompt_tokens": 5, "completion_tokens": 2}}}, "error": null}'
    )
    r = provider.parse(jsonl.loads(line))
    assert (r.id, r.text, r.usage.input_tokens) == ("c1-t1", "ok \ufffd", 5)
