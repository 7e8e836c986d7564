"""The official `openai` Python package, unmodified, against a real `voucherd serve --demo`.

Integrators change only `base_url` and the key. The demo's live traffic is answered by the
built-in sandbox, so these calls are metered and priced exactly like real ones.
"""

import json
import os
import queue
import subprocess
import tempfile
import threading

import openai
import pytest

BIN = os.environ.get("VOUCHERD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "voucherd"))


@pytest.fixture(scope="module")
def demo():
    data = tempfile.mkdtemp(prefix="voucherd-sdk-")
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": f"sqlite://{data}/demo.db",
        "VOUCHERD_BIND": "127.0.0.1:0",
        "VOUCHERD_LOG_FORMAT": "json",
        "RUST_LOG": "info",
    })
    env.pop("VOUCHERD_JWT_SECRET", None)
    proc = subprocess.Popen([BIN, "serve", "--demo"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stderr], daemon=True).start()
    seeded = None
    while seeded is None:
        line = lines.get(timeout=60)
        fields = json.loads(line).get("fields", {})
        if str(fields.get("message", "")).startswith("demo programme seeded"):
            seeded = fields
    client = openai.OpenAI(base_url=seeded["url"] + "/v1", api_key=seeded["api_key"], max_retries=0)
    yield client
    proc.kill()
    proc.wait()


def test_chat_completion(demo):
    r = demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}])
    assert r.choices[0].message.content.startswith("This is a sandbox reply")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_streamed_chat_completion_with_usage(demo):
    stream = demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                          stream=True, stream_options={"include_usage": True}, max_tokens=5)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a sandbox reply "
    assert chunks[-1].usage.completion_tokens == 5


def test_responses_and_embeddings_and_models(demo):
    r = demo.responses.create(model="gpt-4o-mini", input="Say hello", max_output_tokens=3)
    assert r.output_text == "This is a "
    e = demo.embeddings.create(model="gpt-4o-mini", input=["a", "b"])
    assert len(e.data) == 2
    ids = [m.id for m in demo.models.list()]
    assert "gpt-4o-mini" in ids


def test_errors_are_the_sdks_own_exceptions(demo):
    with pytest.raises(openai.NotFoundError):
        demo.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    bad = openai.OpenAI(base_url=str(demo.base_url), api_key="vk_live_" + "0" * 64, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_only_what_the_hold_covers_is_forwarded(demo):
    # What the SDK sends for ordinary use passes: a function tool, `store` set by habit,
    # `service_tier="auto"`, and a previous answer's output items sent back as input.
    tool = {"type": "function", "name": "lookup", "description": "Finds a policy.",
            "parameters": {"type": "object", "properties": {"name": {"type": "string"}},
                           "required": ["name"], "additionalProperties": False},
            "strict": True}
    first = demo.responses.create(model="gpt-4o-mini", input="Say hello", max_output_tokens=3,
                                  tools=[tool], store=True, service_tier="auto")
    assert first.output_text == "This is a "
    follow_up = [{"role": "user", "content": "Say hello"}, *first.output,
                 {"role": "user", "content": "Again"}]
    again = demo.responses.create(model="gpt-4o-mini", input=follow_up, max_output_tokens=2,
                                  include=["reasoning.encrypted_content"])
    assert again.output_text == "This is "
    chat = demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                        tools=[{"type": "function", "function": {"name": "lookup"}}],
                                        service_tier="default", max_completion_tokens=2)
    assert chat.choices[0].message.content == "This is "
    # What it does not cover is refused as the SDK's own error, naming where it is.
    with pytest.raises(openai.BadRequestError) as refused:
        demo.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                                     service_tier="priority")
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "service_tier")
    with pytest.raises(openai.BadRequestError) as refused:
        demo.responses.create(model="gpt-4o-mini", input=[{"type": "item_reference", "id": "msg_123"}])
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "input[0].type")
