"""A stub OpenAI-compatible chat server for the benchmarks, on 127.0.0.1 only.

It answers every chat request with a minimal instance of the request's JSON schema after a
fixed delay, in its own process (so it does not share the benchmark's GIL), and stops with
the script that started it. ``POST /v1/embeddings`` answers at once with a unit vector of
``EMBED_DIM`` numbers seeded by each text (an embedding server that costs almost nothing).
"""

from __future__ import annotations

import hashlib
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

EMBED_DIM = 384


def hash_vector(text: str) -> list[float]:
    """A unit vector seeded by ``text``: the same text, the same vector, in any process."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=EMBED_DIM)
    return (vector / np.linalg.norm(vector)).tolist()


def instance(schema: dict[str, Any], text: str = "criterion aspect 3") -> Any:
    """A minimal value valid under the small JSON-schema subset dgprm uses; every free
    string is ``text``."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: instance(v, text) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        items = schema.get("items", {})
        count = max(schema.get("minItems", 0), 1)
        count = min(count, schema.get("maxItems", count))
        values = []
        for i in range(count):
            value = instance(items, text)
            if items.get("type") == "object":
                for key, prop in items.get("properties", {}).items():
                    if "enum" in prop:
                        value[key] = prop["enum"][i % len(prop["enum"])]
            elif "enum" in items:
                value = items["enum"][i % len(items["enum"])]
            values.append(value)
        return values
    if kind == "integer":
        return max(schema.get("minimum", 0), min(7, schema.get("maximum", 7)))
    if kind == "boolean":
        return True
    return text[: schema.get("maxLength", len(text))]


def serve_stub(delay: float, port_queue: Any, echo: bool = False) -> None:
    """Run the stub server in this (child) process until it is terminated."""
    server, url = make_stub(delay, echo)
    port_queue.put(url)
    server.serve_forever()


def start_stub(delay: float, echo: bool = False) -> tuple[Any, str]:
    """Start the stub in a separate process, so it does not share the benchmark's GIL.
    With ``echo``, free strings (aspects) quote the step being judged, so each step's
    aspects are new texts for the embedder."""
    import multiprocessing

    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve_stub, args=(delay, queue, echo), daemon=True)
    process.start()
    return process, queue.get(timeout=30)


def make_stub(delay: float, echo: bool = False) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real inference servers do
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.endswith("/embeddings"):
                rows = [
                    {"index": i, "embedding": hash_vector(t)} for i, t in enumerate(body["input"])
                ]
                reply = json.dumps({"data": rows, "model": body.get("model")}).encode()
            else:
                reply = json.dumps(self.chat(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def chat(self, body: dict[str, Any]) -> dict[str, Any]:
            time.sleep(delay)
            schema = body.get("response_format", {}).get("json_schema", {}).get("schema", {})
            text = "criterion aspect 3"
            if echo:
                step = body["messages"][-1]["content"].split("Step to evaluate:\n")[-1]
                text = "check that " + step.split("\n")[0][:60]
            return {
                "choices": [
                    {
                        "message": {"content": json.dumps(instance(schema, text))},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10},
            }

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
