"""The reward server, run in-process on 127.0.0.1 with a scripted judge behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from dgprm.config import RewardConfig, RuntimeConfig, ScoringConfig, ServeConfig
from dgprm.errors import InputError
from dgprm.llm import Completion, LLMClient, ResponseCache
from dgprm.records import Trajectory
from dgprm.scoring import StepScorer, score_many
from dgprm.serve import create_app
from tests.conftest import (
    KeywordEmbedder,
    ScriptedBackend,
    critic_answer,
    judge_by_content,
    openai_stub,
    small_tree,
    step_of,
    user_text,
)

KEY = "s3cret-bearer-key-0123456789"


def make_scorer(answer=judge_by_content, *, concurrency=4, backend=None):
    embedder = KeywordEmbedder(dim=64)
    backend = backend or ScriptedBackend(answer)
    client = LLMClient(backend, cache=ResponseCache(":memory:"), concurrency=concurrency)
    return StepScorer(small_tree(embedder), client, embedder, ScoringConfig()), backend


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yield its URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture
def serve():
    """``serve(reward=..., config=..., scorer=...)`` → (client, backend, app) on a live server."""
    stack = contextlib.ExitStack()

    def start(scorer_and_backend=None, **options):
        scorer, backend = scorer_and_backend or make_scorer()
        app = create_app(scorer, **options)
        url = stack.enter_context(running(app))
        client = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        return client, backend, app

    with stack:
        yield start


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in /metrics")


# ---- /v1/score ---------------------------------------------------------------------------


def test_score_answers_the_records_dgprm_score_writes(serve, tmp_path):
    client, _, _ = serve()
    body = {"id": "t0", "question": "What is 2+3?", "steps": ["2+3 = 5", "this is wrong"]}
    answer = client.post("/v1/score", json=body)
    assert answer.status_code == 200
    record = answer.json()
    # the same per-step JSON as a `dgprm score` line for the same trajectory
    scorer, _ = make_scorer()
    out = tmp_path / "rewards.jsonl"
    asyncio.run(score_many(scorer, [Trajectory(**body)], out))
    line = json.loads(out.read_text())
    assert record["steps"] == line["steps"] and record["errors"] == line["errors"] == []
    assert set(record) == {"id", "steps", "usage", "errors", "solution_reward", "fallback"}
    assert record["usage"]["llm_calls"] == line["usage"]["llm_calls"] == 6
    assert [s["vector"] for s in record["steps"]] == [[1.0], [0.222222]]
    assert [s["label"] for s in record["steps"]] == [True, False]
    assert record["solution_reward"] == 0.222222 and record["fallback"] is False  # min of steps


def test_score_batch_and_steps_given_as_one_text(serve):
    client, backend, _ = serve(reward=RewardConfig(agg="mean"))
    items = [
        {"question": "What is 2+3?", "steps": "Step 1: 2+3 = 5\nStep 2: so it is wrong"},
        {"id": "b", "question": "What is 1+1?", "steps": ["1+1 = 2"]},
    ]
    answer = client.post("/v1/score", json={"items": items})
    assert answer.status_code == 200
    records = answer.json()["items"]
    assert [r["id"] for r in records] == ["0", "b"]
    assert [len(r["steps"]) for r in records] == [2, 1]
    assert records[0]["solution_reward"] == pytest.approx((1.0 + 0.222222) / 2, abs=1e-6)
    assert {step_of(r) for r in backend.requests} == {"2+3 = 5", "so it is wrong", "1+1 = 2"}


# ---- /get_reward (OpenRLHF) ---------------------------------------------------------------


CHAT_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
)


def test_get_reward_takes_openrlhfs_exact_request_and_answers_its_format(serve):
    client, backend, _ = serve()
    responses = ["2+3 = 5.\n\nSo the answer is 5.<|im_end|>", "2+3 = 6, which is wrong.<|im_end|>"]
    # what OpenRLHF's SingleTurnAgentExecutor posts: query = decoded prompt + response tokens
    payload = {
        "query": [CHAT_PROMPT + r for r in responses],
        "prompts": [CHAT_PROMPT, CHAT_PROMPT],
        "labels": ["5", "5"],
    }
    answer = client.post("/get_reward", json=payload, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"rewards", "scores", "extra_logs"}
    assert body["rewards"] == body["scores"] == [1.0, 0.222222]
    logs = body["extra_logs"]
    assert logs["dgprm_steps"] == [2.0, 1.0] and logs["dgprm_fallback"] == [0.0, 0.0]
    assert all(len(v) == 2 and all(isinstance(x, float) for x in v) for v in logs.values())
    # the response was cut into steps without the control tokens; the prompt is the question
    assert {step_of(r) for r in backend.requests} == {
        "2+3 = 5.",
        "So the answer is 5.",
        "2+3 = 6, which is wrong.",
    }
    assert all("What is 2+3?" in user_text(r) for r in backend.requests)
    assert all("<|im_end|>" not in step_of(r) for r in backend.requests)


def test_get_reward_without_prompts_finds_the_response_at_the_first_step_label(serve):
    client, backend, _ = serve()
    answer = client.post("/get_reward", json={"query": ["What is 2+3?\nStep 1: 2+3 = 5"]})
    assert answer.status_code == 200 and answer.json()["rewards"] == [1.0]
    assert {step_of(r) for r in backend.requests} == {"2+3 = 5"}


def test_step_separator_is_configurable(serve):
    client, backend, _ = serve(reward=RewardConfig(step_sep=" ;; "))
    query = CHAT_PROMPT + "2+3 = 5 ;; so 5"
    answer = client.post("/get_reward", json={"query": [query], "prompts": [CHAT_PROMPT]})
    assert answer.status_code == 200
    assert {step_of(r) for r in backend.requests} == {"2+3 = 5", "so 5"}


# ---- failures: never a silent default ----------------------------------------------------


def test_a_failed_scoring_is_an_error_status_naming_what_failed(serve):
    client, _, app = serve()
    query = CHAT_PROMPT + "2+3 = 5\n\nthis will fail"
    answer = client.post("/get_reward", json={"query": [query], "prompts": [CHAT_PROMPT]})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error.startswith("query 0: step 1: score: unparseable answer") and "\n" not in error
    scored = client.post(
        "/v1/score", json={"question": "q?", "steps": ["2+3 = 5", "this will fail"]}
    )
    assert scored.status_code == 502 and scored.json()["error"].startswith("item 0: step 1:")
    assert scored.json()["solution_reward"] is None  # the records come along, no reward
    assert scored.json()["errors"][0]["step"] == 1
    text = client.get("/metrics").text
    assert metric(text, 'dgprm_items_total{endpoint="/get_reward",outcome="failed"}') == 1
    assert metric(text, 'dgprm_requests_total{endpoint="/get_reward",status="502"}') == 1
    assert "dgprm_fallback_rewards_total{" not in text


def test_on_error_gives_the_chosen_fallback_and_counts_every_use(serve):
    client, _, _ = serve(reward=RewardConfig(on_error=-1.0))
    queries = [CHAT_PROMPT + "2+3 = 5", CHAT_PROMPT + "this will fail", CHAT_PROMPT + "   "]
    answer = client.post("/get_reward", json={"query": queries, "prompts": [CHAT_PROMPT] * 3})
    assert answer.status_code == 200
    body = answer.json()
    assert body["rewards"] == [1.0, -1.0, -1.0]  # a failed scoring and an empty response
    assert body["extra_logs"]["dgprm_fallback"] == [0.0, 1.0, 1.0]
    scored = client.post("/v1/score", json={"question": "q?", "steps": ["this will fail"]})
    assert scored.status_code == 200
    assert scored.json()["solution_reward"] == -1.0 and scored.json()["fallback"] is True
    assert scored.json()["errors"][0]["reason"].startswith("score: unparseable answer")
    text = client.get("/metrics").text
    assert metric(text, 'dgprm_fallback_rewards_total{endpoint="/get_reward"}') == 2
    assert metric(text, 'dgprm_fallback_rewards_total{endpoint="/v1/score"}') == 1
    assert metric(text, 'dgprm_items_total{endpoint="/get_reward",outcome="ok"}') == 1


# ---- bad bodies, sizes, keys ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/get_reward", b"{not json", "body is not valid JSON"),
        ("/get_reward", b"[1, 2]", "body must be a JSON object"),
        ("/get_reward", b'{"prompts": ["a"]}', "field 'query': Field required"),
        ("/get_reward", b'{"query": []}', "field 'query': List should have at least 1 item"),
        (
            "/get_reward",
            b'{"query": ["a b"], "prompts": ["a", "b"]}',
            "prompts has 2 entries but query has 1",
        ),
        (
            "/get_reward",
            b'{"query": ["x y"], "prompts": ["other"]}',
            "query 0: the query does not start with its prompt",
        ),
        ("/get_reward", b'{"query": ["no label here"]}', "query 0: no prompt given"),
        ("/get_reward", b'{"query": ["q? "], "prompts": ["q?"]}', "query 0: the response has no"),
        ("/v1/score", b'{"question": "q"}', "field 'steps': Field required"),
        ("/v1/score", b'{"question": "q", "steps": ["a", " "]}', "item 0: step 1 is empty"),
        ("/v1/score", b'{"question": " ", "steps": ["a"]}', "item 0: the question is empty"),
        ("/v1/score", b'{"items": []}', "field 'items': List should have at least 1 item"),
        ("/v1/score", b'{"question": "q", "steps": ["a"], "stepz": 1}', "field 'stepz'"),
    ],
)
def test_bad_bodies_get_422_with_a_one_line_reason(serve, path, body, reason):
    client, backend, _ = serve()
    answer = client.post(path, content=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert reason in error and "\n" not in error
    assert backend.requests == []  # nothing was scored


def test_texts_over_the_length_limit_are_refused(serve):
    client, _, _ = serve(runtime=RuntimeConfig(max_chars=100))
    answer = client.post("/v1/score", json={"question": "q", "steps": ["x" * 101]})
    assert answer.status_code == 422
    assert "field 'steps[0]': text of 101 characters exceeds the limit of 100" in answer.text


def test_oversized_bodies_get_413_declared_or_streamed(serve):
    client, backend, _ = serve(config=ServeConfig(max_body_bytes=2048))
    big = json.dumps({"query": ["x" * 4000]}).encode()
    assert client.post("/get_reward", content=big).status_code == 413

    def chunks():  # no Content-Length: chunked transfer encoding
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    answer = client.post("/get_reward", content=chunks())
    assert answer.status_code == 413 and "exceeds the limit of 2048 bytes" in answer.json()["error"]
    assert backend.requests == []


def test_bearer_key_is_required_when_configured_and_never_logged(serve, monkeypatch, caplog, capfd):
    monkeypatch.setenv("DGPRM_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    client, _, _ = serve(config=ServeConfig(api_key_env="DGPRM_TEST_KEY"))
    body = {"question": "What is 2+3?", "steps": ["2+3 = 5"]}
    assert client.get("/health").status_code == 200  # no key needed
    missing = client.post("/v1/score", json=body)
    assert missing.status_code == 401 and missing.json()["error"] == "missing bearer key"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/v1/score", json=body, headers={"Authorization": f"Bearer {KEY}x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong bearer key"
    for path in ("/metrics", "/v1/tree"):
        assert client.get(path).status_code == 401
    good = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/v1/score", json=body, headers=good).status_code == 200
    assert client.post("/get_reward", json={"query": ["q\nStep 1: a"]}, headers=good).is_success
    assert client.get("/metrics", headers=good).status_code == 200
    captured = capfd.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "POST /v1/score" in logged  # the access log ran ...
    assert KEY not in logged and KEY[:8] not in logged  # ... and shows nothing of the key


def test_a_configured_key_variable_that_is_unset_is_refused(monkeypatch):
    monkeypatch.delenv("DGPRM_TEST_KEY", raising=False)
    scorer, _ = make_scorer()
    with pytest.raises(InputError, match="DGPRM_TEST_KEY"):
        create_app(scorer, ServeConfig(api_key_env="DGPRM_TEST_KEY"))


# ---- health, tree, metrics, the shared client --------------------------------------------


def test_health_and_tree_summary(serve):
    client, _, _ = serve()
    assert client.get("/health").json()["status"] == "ok"
    summary = client.get("/v1/tree").json()
    assert summary["llm"] == "scripted" and summary["embedder"] == "keyword-test"
    assert summary["tree"]["parents"] == 2 and summary["tree"]["children"] == 3
    assert [n["id"] for n in summary["tree"]["nodes"]] == ["p1", "p2"]
    assert summary["reward"]["agg"] == "min" and summary["scoring"]["zeta"] == 0.2


def test_metrics_count_requests_latency_llm_calls_and_cache_hits(serve):
    client, backend, _ = serve()
    body = {"query": [CHAT_PROMPT + "2+3 = 5"], "prompts": [CHAT_PROMPT]}
    for _ in range(3):  # the same query: answered from the shared cache after the first
        assert client.post("/get_reward", json=body).status_code == 200
    client.post("/get_reward", content=b"{")
    text = client.get("/metrics").text
    assert "# TYPE dgprm_request_seconds histogram" in text
    assert metric(text, 'dgprm_requests_total{endpoint="/get_reward",status="200"}') == 3
    assert metric(text, 'dgprm_requests_total{endpoint="/get_reward",status="422"}') == 1
    assert metric(text, 'dgprm_request_seconds_count{endpoint="/get_reward"}') == 4
    assert metric(text, 'dgprm_request_seconds_bucket{endpoint="/get_reward",le="+Inf"}') == 4
    assert metric(text, "dgprm_llm_calls_total") == len(backend.requests) == 3
    assert metric(text, "dgprm_cache_hits_total") == 6
    assert metric(text, 'dgprm_steps_total{endpoint="/get_reward"}') == 3
    assert metric(text, "dgprm_llm_concurrency_limit") == 4


class SlowBackend(ScriptedBackend):
    """Answers after a pause, and records the most calls it had in flight at once."""

    def __init__(self) -> None:
        super().__init__(judge_by_content)
        self.in_flight = self.peak = 0

    async def complete(self, request):
        self.requests.append(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.02)
            return Completion(self.answer(request), 10, 5)
        finally:
            self.in_flight -= 1


def test_concurrent_requests_share_one_client_and_its_concurrency_bound(serve):
    backend = SlowBackend()
    client, _, _ = serve(make_scorer(backend=backend, concurrency=3))
    url = str(client.base_url)

    async def many():
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            bodies = [
                {"query": [f"What is {i}+{i}?\nStep 1: {i}+{i} = {2 * i}\nStep 2: done {i}"]}
                for i in range(8)
            ]
            return await asyncio.gather(*(http.post("/get_reward", json=b) for b in bodies))

    answers = asyncio.run(many())
    assert all(a.status_code == 200 for a in answers)
    assert backend.peak == 3  # 8 requests × 2 steps, never more than the bound in flight
    assert len(backend.requests) == 8 * 2 * 3


# ---- the command ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_until_interrupted(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("DGPRM_TEST_KEY", KEY)
    port = free_port()
    with openai_stub(critic_answer) as llm:
        command = [sys.executable, "-m", "dgprm", "serve", "--no-tree", "--llm", llm]
        command += ["--port", str(port), "--cache", str(tmp_path / "c.sqlite"), "--agg", "mean"]
        command += ["--api-key-env", "DGPRM_TEST_KEY", "--step-sep", r"\n"]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None and time.monotonic() < deadline
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/health").status_code == 200:
                        break
                time.sleep(0.2)
            headers = {"Authorization": f"Bearer {KEY}"}
            body = {"query": ["Q?\n2+2 = 4\nthis is wrong"], "prompts": ["Q?"]}
            answer = httpx.post(url + "/get_reward", json=body, headers=headers)
            assert answer.status_code == 200 and answer.json()["rewards"] == [0.5]  # mean(7/9, 2/9)
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "bearer key" in err and "required (from $DGPRM_TEST_KEY)" in err
    assert KEY not in out + err and '"POST /get_reward HTTP/1.1" 200' in out + err


def test_cli_refuses_an_unset_key_variable_in_one_line(monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv("DGPRM_TEST_KEY", raising=False)
    command = [sys.executable, "-m", "dgprm", "serve", "--no-tree", "--llm", "openai:http://x/v1#m"]
    result = subprocess.run(
        [*command, "--api-key-env", "DGPRM_TEST_KEY"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --api-key-env DGPRM_TEST_KEY: that environment variable is not set or empty"
    )
