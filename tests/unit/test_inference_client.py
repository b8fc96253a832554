"""The inference client's HTTP handling, against a small local HTTP server that speaks the
streamed OpenAI protocol the way llama-server does (chunked server-sent events). The real
llama-server is exercised by tests/integration/test_inference.py."""
import http.server
import json
import socket
import threading
import time

import pytest

from ruvllm import errors, generation, inference

CHAT = generation.ModelSpec("m", "/nonexistent/m.gguf", "chat", 2048)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pieces = ["Hel", "lo", " world", "!"]
    delay = 0.0
    seen = []
    disconnected = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append((self.path, body, self.headers.get("Authorization")))
        if self.path == "/tokenize":
            # As llama-server: a token a word; in a "content" array each string is tokenised
            # alone and a number is passed through as a token id.
            content = body["content"] if isinstance(body["content"], list) else [body["content"]]
            tokens = []
            for part in content:
                tokens += [part] if isinstance(part, int) else [len(w) for w in part.split()]
            data = json.dumps({"tokens": tokens}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self.path == "/v1/fail":
            self.send_response(500)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"oops")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i, piece in enumerate(self.pieces):
                event = {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                time.sleep(self.delay)
            done = {"choices": [{"delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": len(self.pieces)}}
            self._chunk(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            Handler.disconnected.set()

    def _chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@pytest.fixture
def server():
    Handler.pieces, Handler.delay, Handler.seen = ["Hel", "lo", " world", "!"], 0.0, []
    Handler.disconnected = threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def backend(port, **kw):
    return inference.ServerBackend(inference.StaticEndpoints(f"http://127.0.0.1:{port}/v1"), **kw)


def test_streams_pieces_and_usage(server):
    got = []
    out = backend(server, api_key="k").generate(CHAT, "Hi", system="sys", history=[("q", "a")],
                                                max_tokens=5, on_token=got.append)
    assert got == ["Hel", "lo", " world", "!"] and out.text == "Hello world!"
    assert (out.prompt_tokens, out.completion_tokens, out.finish_reason) == (7, 4, "stop")
    path, body, auth = Handler.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["cache_prompt"] is True and body["max_tokens"] == 5


def test_counts_tokens_on_the_server_and_caches_them(server):
    b = backend(server)
    assert b.count_tokens(CHAT, "one two three") == 3
    assert b.count_tokens(CHAT, "one two three") == 3
    assert [p for p, _, _ in Handler.seen] == ["/tokenize"]


class BatchingEndpoints(inference.StaticEndpoints):
    batch_tokenize = True   # as the supervised llama-server's


def test_counts_many_texts_in_one_request_to_llama_server(server):
    b = inference.ServerBackend(BatchingEndpoints(f"http://127.0.0.1:{server}"))
    model = generation.ModelSpec("m", "/nonexistent/batch.gguf", "chat", 2048)
    texts = ["alpha beta", "", "gamma", "delta epsilon zeta", "alpha beta"]
    assert b.count_tokens_many(model, texts) == [2, 0, 1, 3, 2]
    [(path, body, _)] = Handler.seen
    # The distinct texts, separated by a token id no text produces.
    assert path == "/tokenize" and body["content"] == ["alpha beta", -1, "", -1, "gamma", -1,
                                                       "delta epsilon zeta"]
    assert body["parse_special"] is False and body["add_special"] is False
    # Counted: no request for them again, one for the new text alone.
    assert b.count_tokens_many(model, ["gamma", "eta theta", "alpha beta"]) == [1, 2, 2]
    assert [body["content"] for _, body, _ in Handler.seen[1:]] == ["eta theta"]


def test_a_remote_server_counts_one_text_a_request(server):
    b = backend(server)   # StaticEndpoints: maybe vLLM, whose /tokenize takes one string
    model = generation.ModelSpec("m", "/nonexistent/remote.gguf", "chat", 2048)
    assert b.count_tokens_many(model, ["one two", "three"]) == [2, 1]
    assert [body["content"] for _, body, _ in Handler.seen] == ["one two", "three"]


def test_an_interrupt_closes_the_connection_and_propagates(server):
    Handler.pieces, Handler.delay = ["x"] * 100, 0.05
    calls = []

    class Cancelled(Exception):
        pass

    def check():
        calls.append(1)
        if len(calls) > 5:
            raise Cancelled()
    b = backend(server, interrupt_check=check)
    with pytest.raises(Cancelled):
        b.generate(CHAT, "long", max_tokens=100)
    assert b.last_cancelled
    assert Handler.disconnected.wait(10)


def test_http_errors_and_an_unreachable_server_are_clear(server):
    b = backend(server)
    with pytest.raises(errors.RuvllmError) as e:
        b._request(CHAT, "/v1/fail", {}, time.monotonic() + 5)
    assert e.value.sqlstate == inference.SYSTEM_ERROR and e.value.detail == "oops"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(errors.RuvllmError) as e:
        backend(closed, timeout=0.3).generate(CHAT, "hi")
    assert e.value.sqlstate == inference.CANNOT_CONNECT and "ruvllm.inference_url" in e.value.hint


def test_a_server_that_stops_answering_times_out(server):
    Handler.pieces, Handler.delay = ["x"] * 50, 0.2
    with pytest.raises(errors.RuvllmError) as e:
        backend(server, timeout=0.5).generate(CHAT, "slow")
    assert e.value.sqlstate == inference.SYSTEM_ERROR and "ruvllm.inference_timeout" in e.value.message
