"""Test doubles injected at dgprm's boundaries (no monkey-patching of internals)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from dgprm.llm import ChatRequest, Completion, LLMClient, ResponseCache
from dgprm.tree.model import Criterion, Node, RewardTree

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SAMPLES = Path(__file__).resolve().parents[1] / "src" / "dgprm" / "samples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


class ScriptedBackend:
    """A chat backend whose answers come from a function of the request.

    Records every request it receives so tests can assert on the calls made.
    """

    def __init__(
        self, answer: Callable[[ChatRequest], str | Completion], model_id: str = "scripted"
    ) -> None:
        self.answer = answer
        self.model_id = model_id
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        result = self.answer(request)
        if isinstance(result, Completion):
            return result
        return Completion(result, prompt_tokens=10, completion_tokens=5)

    async def aclose(self) -> None:
        pass

    def stages(self) -> list[str]:
        return [r.template.split("@")[0] for r in self.requests]


def user_text(request: ChatRequest) -> str:
    return request.messages[-1]["content"]


def tree_answers(request: ChatRequest) -> str:
    """Plausible judge / validator / summarizer answers keyed on the prompt template."""
    stage = request.template.split("@")[0]
    text = user_text(request)
    if stage == "judge":
        topics = ["arithmetic", "equations"] if "+" in text else ["units", "definitions"]
        return json.dumps(
            {
                "criteria": [
                    {"title": f"Correct {t}", "description": f"Each step handles {t} correctly."}
                    for t in topics
                ]
            }
        )
    if stage == "validate":
        count = len(re.findall(r"^\[\d+\]", text, flags=re.M))
        return json.dumps(
            {"verdicts": [{"index": i, "keep": True, "reason": "ok"} for i in range(count)]}
        )
    if stage == "summarize":
        return json.dumps({"title": "Sound steps", "description": "Steps are correct."})
    raise AssertionError(f"unexpected template {request.template}")


class KeywordEmbedder:
    """Deterministic embedder: one dimension per known keyword, hashed buckets otherwise."""

    def __init__(self, dim: int = 32, model_id: str = "keyword-test") -> None:
        self.dim = dim
        self.model_id = model_id

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                bucket = int(hashlib.md5(word.encode()).hexdigest()[:6], 16) % self.dim
                rows[i, bucket] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1, norms)


# ---- a small reward tree and a scripted step judge ---------------------------------------


TEXTS = {
    "c1": "arithmetic is computed correctly",
    "c2": "equations are set up correctly",
    "c3": "units are converted correctly",
}


def small_tree(embedder) -> RewardTree:
    criteria = [
        Criterion(f"x/{i}", "x", t.split()[0], t, True, child=c)
        for i, (c, t) in enumerate(TEXTS.items())
    ]
    vectors = embedder.encode(list(TEXTS.values()))
    nodes = [
        Node("p1", "parent", "Calculations are right", children=["c1", "c2"]),
        Node("p2", "parent", "Units are handled", children=["c3"]),
        Node("c1", "child", TEXTS["c1"], parent="p1", members=["x/0"], sources=["x"]),
        Node("c2", "child", TEXTS["c2"], parent="p1", members=["x/1"], sources=["x"]),
        Node("c3", "child", TEXTS["c3"], parent="p2", members=["x/2"], sources=["x"]),
    ]
    parent_rows = np.stack([vectors[:2].mean(0), vectors[2]])
    rows = np.concatenate([parent_rows, vectors, vectors]).astype(np.float32)
    tree = RewardTree(nodes, criteria, rows, {"embedder": embedder.model_id})
    tree.check()
    return tree


def offered_ids(request):
    return re.findall(r"^\[(\w+)\]", request.messages[-1]["content"], flags=re.M)


def judge(request, *, aspects=("arithmetic is computed correctly",), score=lambda i, step: 8):
    stage = request.template.split("@")[0]
    if stage in ("select", "select_analyze"):
        answer = {"parents": ["p1"], "fine_grained": True, "aspects": list(aspects)}
        return json.dumps(answer if stage == "select_analyze" else {"parents": ["p1"]})
    if stage == "analyze":
        return json.dumps({"fine_grained": True, "aspects": list(aspects)})
    if stage == "score":
        step = request.messages[-1]["content"].split("Step to evaluate:\n")[1].split("\n")[0]
        return json.dumps({"scores": {i: score(i, step) for i in offered_ids(request)}})
    raise AssertionError(stage)


def step_of(request) -> str:
    """The step a score/select/analyze request evaluates."""
    return user_text(request).split("Step to evaluate:\n")[1].split("\n")[0]


def judge_by_content(request):
    """The scripted step judge scoring 9, or 2 for a step with "wrong"; a step with "fail"
    gets an unparseable answer."""
    if request.template.startswith("score") and "fail" in step_of(request):
        return "no JSON here"
    return judge(request, score=lambda i, step: 2 if "wrong" in step else 9)


@pytest.fixture
def scripted_client() -> Callable[..., tuple[LLMClient, ScriptedBackend]]:
    def make(
        answer: Callable[[ChatRequest], str | Completion] = tree_answers,
        cache: ResponseCache | None = None,
    ) -> tuple[LLMClient, ScriptedBackend]:
        backend = ScriptedBackend(answer)
        return LLMClient(
            backend, cache=cache if cache is not None else ResponseCache(":memory:"), backoff=0.0
        ), backend

    return make


def write_pairs(path: Path, count: int = 4) -> Path:
    rows = []
    for i in range(count):
        rows.append(
            {
                "id": f"p{i}",
                "question": f"What is {i}+{i}?",
                "chosen": [f"{i}+{i} = {2 * i}"],
                "rejected": [f"{i}+{i} = {2 * i + 1}"],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny, randomly initialised Llama with SmolLM2's tokenizer (read offline from the
    packaged GGUF), saved as a model directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from dgprm.llm.embedded import packaged_gguf

    gguf = packaged_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---- an OpenAI-compatible judge on 127.0.0.1, for commands run as subprocesses ----------


@contextlib.contextmanager
def openai_stub(answer: Callable[[dict], str]) -> Iterator[str]:
    """Serve ``/v1/chat/completions`` on a free 127.0.0.1 port in a thread, answering each
    request body with ``answer(body)``; yield the ``openai:URL#stub`` LLM spec."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = json.dumps(
                {
                    "choices": [{"message": {"content": answer(body)}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"openai:http://127.0.0.1:{server.server_address[1]}/v1#stub"
    finally:
        server.shutdown()
        server.server_close()


def critic_answer(body: dict) -> str:
    """The no-tree critic's answer: 7 of 10, 2 for a step that says "wrong"."""
    step = body["messages"][-1]["content"].split("Step to evaluate:\n")[1].split("\n")[0]
    return json.dumps({"scores": {"critic": 2 if "wrong" in step else 7}})
