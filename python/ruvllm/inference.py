"""Generation through an inference server: the shared servers PostgreSQL supervises
(ruvllm.inference = server) or a remote OpenAI-compatible one (remote: a llama.cpp server or vLLM).

The backend that answers holds no model: it sends the request over HTTP (standard library only),
reads the answer as a stream of server-sent events, and counts tokens with the server's /tokenize.
Between chunks, and while it waits for a server that is restarting, it lets PostgreSQL process
interrupts through a callback the glue passes (`interrupt_check`): a statement cancel or
statement_timeout raises there, the HTTP connection is closed (llama-server stops the slot when its
client goes away) and the error goes up unchanged, so the witness row records it.

`backend_for(plpy)` is the one place the pipeline asks which generator to use.
"""
import http.client
import json
import os
import queue
import select
import socket
import ssl
import threading
import time
import urllib.parse

from . import errors, generation, native
from .sqlglue import planner, seconds, setting

CONNECTION_FAILURE = "08006"
CANNOT_CONNECT = "08001"
SYSTEM_ERROR = "58000"

# How long one socket read waits before the interrupt check runs again.
READ_POLL_S = 0.1
# How often a request in flight lets PostgreSQL look at pending interrupts (at most).
INTERRUPT_EVERY_S = 0.05
# Between the texts of one batched /tokenize request: a token id no text produces.
SEPARATOR = -1

_plan = planner()
# Token counts by (model file, text), kept across requests (a ServerBackend is made per request):
# a session's history and the memory nodes that come back often are counted once per backend.
_TOKEN_COUNTS = generation.TokenCounts()


def backend_for(plpy):
    """The generator this session's ruvllm.inference names."""
    mode = setting(plpy, "ruvllm.inference", "in_process")
    if mode == "in_process":
        return generation.default_backend()
    timeout = seconds(setting(plpy, "ruvllm.inference_timeout", "60"))
    check = _interrupt_check(plpy)
    if mode == "remote":
        url = setting(plpy, "ruvllm.inference_url", "")
        if not url:
            raise errors.RuvllmError(
                "22023", "ruvllm.inference is remote but ruvllm.inference_url is not set",
                hint="SET ruvllm.inference_url = 'http://host:port' (a llama.cpp server or vLLM), "
                     "or ruvllm.inference = in_process.")
        return ServerBackend(StaticEndpoints(url), interrupt_check=check, timeout=timeout,
                             api_key=native.inference_credential(plpy))
    return ServerBackend(SupervisedEndpoints(plpy), interrupt_check=check, timeout=timeout)


def _interrupt_check(plpy):
    plan = _plan(plpy, "interrupts", "SELECT pg_catalog.pg_sleep(0)", [])
    return lambda: plpy.execute(plan)


# --- where the servers are ------------------------------------------------------------------------

class StaticEndpoints:
    """One remote server for every model. It may be vLLM, whose /tokenize takes one string, so
    texts are counted one request each (batch_tokenize false)."""

    batch_tokenize = False

    def __init__(self, url):
        parsed = urllib.parse.urlsplit(url)
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.https else 80)
        path = parsed.path.rstrip("/")
        # Both http://host:8080 and http://host:8000/v1 name the same API.
        self.prefix = path[:-3] if path.endswith("/v1") else path

    unreachable_hint = ("Check that the server at ruvllm.inference_url is up and reachable from the "
                        "database server, or SET ruvllm.inference = server | in_process.")

    def find(self, model):
        return self

    def describe(self, model):
        return f"the remote inference server {self.host}:{self.port}"


class SupervisedEndpoints:
    """The supervised servers, looked up by model file in ruvllm._inference_servers()."""

    https = False
    host = "127.0.0.1"
    prefix = ""
    # Our own llama-server: its /tokenize counts many texts in one request.
    batch_tokenize = True
    unreachable_hint = ("See SELECT * FROM ruvllm.inference_servers and ruvllm_health(); the supervisor "
                        "restarts a server that exited, with backoff.")

    def __init__(self, plpy):
        self.plpy = plpy
        self.port = None

    def servers(self):
        return self.plpy.execute(_plan(self.plpy, "servers",
                                       "SELECT * FROM ruvllm._inference_servers()", []))

    def find(self, model):
        want = os.path.realpath(model.path)
        rows = self.servers()
        for row in rows:
            if os.path.realpath(row["model"]) == want:
                if row["state"] != "running" or not row["port"]:
                    return None
                found = SupervisedEndpoints(self.plpy)
                found.port = row["port"]
                return found
        if not rows:
            hint = ("The inference servers run while the server-wide ruvllm.inference is server "
                    "(ALTER SYSTEM SET ruvllm.inference = 'server'; SELECT pg_reload_conf()), with "
                    "ruvllm in shared_preload_libraries; or SET ruvllm.inference = in_process.")
        else:
            hint = "Add its file to ruvllm.inference_models and reload, or SET ruvllm.inference = in_process."
        raise errors.RuvllmError("55000", f"no inference server serves model '{model.name}' ({model.path})",
                                 hint=hint)

    def describe(self, model):
        return f"the inference server of model '{model.name}'"


# --- the backend ----------------------------------------------------------------------------------

class ServerBackend(generation.GenerationBackend):
    """Generation by an OpenAI-compatible HTTP server, streamed and cancellable."""

    # Attributes the pipeline sets for the in-process backend; nothing to do with them here.
    max_loaded = None
    n_threads = None

    def __init__(self, endpoints, *, interrupt_check=None, timeout=60.0, api_key=None):
        self.endpoints = endpoints
        self.interrupt_check = interrupt_check or (lambda: None)
        self.timeout = float(timeout)
        self.api_key = api_key
        self.token_counts = _TOKEN_COUNTS
        self._endpoints = {}
        self._last_check = 0.0
        self.last_cancelled = False

    # -- plumbing

    def _check_interrupts(self, force=False):
        now = time.monotonic()
        if force or now - self._last_check >= INTERRUPT_EVERY_S:
            self._last_check = now
            try:
                self.interrupt_check()
            except BaseException:
                self.last_cancelled = True
                raise

    def _connect(self, model, deadline):
        """An open socket to the model's server, waiting (interruptibly) while it restarts."""
        last = None
        while True:
            self._check_interrupts(force=True)
            ep = self._endpoints.pop(model.path, None) or self.endpoints.find(model)
            if ep is not None:
                try:
                    sock = socket.create_connection(
                        (ep.host, ep.port), timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                    if ep.https:
                        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=ep.host)
                    sock.settimeout(5.0)   # reads run only when select() says there is data
                    self._endpoints[model.path] = ep   # found again only after a failed connect
                    return sock, ep
                except OSError as e:
                    last = e
            else:
                last = "the server is restarting"
            if time.monotonic() >= deadline:
                raise errors.RuvllmError(
                    CANNOT_CONNECT, f"cannot reach {self.endpoints.describe(model)}: {last}",
                    detail=f"waited {self.timeout:g} s (ruvllm.inference_timeout)",
                    hint=self.endpoints.unreachable_hint)
            time.sleep(0.1)

    def _request(self, model, path, body, deadline):
        """A _Response to a POST, retried while the server is loading its model (503)."""
        payload = json.dumps(body).encode()
        while True:
            sock, ep = self._connect(model, deadline)
            head = [f"POST {ep.prefix}{path} HTTP/1.1", f"Host: {ep.host}:{ep.port}",
                    "Content-Type: application/json", "Accept: text/event-stream",
                    f"Content-Length: {len(payload)}", "Connection: close"]
            if self.api_key:
                head.append(f"Authorization: Bearer {self.api_key}")
            response = _Response(sock, lambda: self._waiting(model, deadline), self.endpoints.describe(model))
            try:
                sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                response.begin()
            except BaseException:
                response.close()
                raise
            if response.status == 503 and time.monotonic() < deadline:
                response.close()     # loading the model: wait as for a restart
                time.sleep(0.1)
                continue
            if response.status != 200:
                try:
                    text = response.read_all()[:500]
                finally:
                    response.close()
                if response.status in (401, 403):
                    raise errors.RuvllmError(
                        "28000", f"{self.endpoints.describe(model)} refused the request's credentials "
                                 f"(HTTP {response.status})",
                        detail=text.decode("utf-8", "replace"),
                        hint="A superuser sets ruvllm.inference_api_key to the key the server expects.")
                raise errors.RuvllmError(
                    SYSTEM_ERROR, f"{self.endpoints.describe(model)} answered HTTP {response.status}",
                    detail=text.decode("utf-8", "replace"),
                    hint="See the server's log (ruvllm_inference/ in the data directory for a supervised one).")
            return response

    def _waiting(self, model, deadline):
        """Runs while a read waits for data: interrupts, then the request timeout."""
        self._check_interrupts()
        if time.monotonic() >= deadline:
            raise errors.RuvllmError(
                SYSTEM_ERROR, f"{self.endpoints.describe(model)} did not answer within "
                              f"ruvllm.inference_timeout ({self.timeout:g} s)",
                hint="Raise ruvllm.inference_timeout, lower max_tokens, or add slots "
                     "(ruvllm.inference_slots) if requests queue.")

    # -- GenerationBackend

    def count_tokens_many(self, model, texts):
        return self.token_counts.count_many(model, texts, self._tokenize_many)

    def _tokenize_many(self, model, texts):
        """Counts from the server's /tokenize: one request for all the texts where the endpoints
        say the server is llama-server (batch_tokenize), else one request a text."""
        if not getattr(self.endpoints, "batch_tokenize", False) or len(texts) == 1:
            return [self._tokenize(model, {"content": text, "prompt": text}) for text in texts]
        # llama-server tokenises each string of a "content" array alone (as if it were sent by
        # itself) and passes numbers through as token ids: a SEPARATOR between the texts, which
        # no text produces (ids are >= 0), marks where each text's tokens end.
        content = []
        for text in texts:
            content += [text, SEPARATOR]
        tokens = self._tokenize(model, {"content": content[:-1]}, raw=True)
        counts, n = [], 0
        for token in tokens:
            if token == SEPARATOR:
                counts.append(n)
                n = 0
            else:
                n += 1
        counts.append(n)
        if len(counts) != len(texts):
            raise errors.RuvllmError(
                SYSTEM_ERROR, f"{self.endpoints.describe(model)} tokenised {len(texts)} texts as "
                              f"{len(counts)}", hint="Is the server llama.cpp's llama-server?")
        return counts

    def _tokenize(self, model, body, raw=False):
        """One /tokenize request: its tokens (raw) or their number. Special tokens' text is
        counted as text (parse_special false), as the in-process tokenizer counts it."""
        deadline = time.monotonic() + self.timeout
        response = self._request(model, "/tokenize",
                                 dict(body, add_special=False, parse_special=False, model=model.name,
                                      add_special_tokens=False), deadline)
        try:
            out = json.loads(response.read_all())
        finally:
            response.close()
        if raw:
            return out.get("tokens", ())
        return out["count"] if "count" in out else len(out.get("tokens", ()))

    def generate(self, model, prompt, *, max_tokens=128, temperature=0.7, top_p=0.9,
                 system=None, seed=None, history=(), stop=None, on_token=None):
        """on_token(text): called with each piece of text as it arrives (streaming)."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        body = {"model": model.name, "max_tokens": int(max_tokens), "temperature": float(temperature),
                "top_p": float(top_p), "stream": True, "stream_options": {"include_usage": True},
                # llama-server: reuse the KV state of the longest matching prefix in a slot (a
                # session's earlier turns), so a continuing session evaluates only its new tokens.
                "cache_prompt": True}
        if seed is not None:
            body["seed"] = int(seed)
        if stop:
            body["stop"] = list(stop)
        if model.prompt_style == "chat":
            body["messages"] = generation.chat_messages(system, history, prompt)
            path = "/v1/chat/completions"
        else:
            turns = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in history)
            body["prompt"] = (f"{system}\n\n" if system else "") + turns + prompt
            path = "/v1/completions"
        self.last_cancelled = False
        response = self._request(model, path, body, deadline)
        pieces, usage, timings, finish = [], {}, {}, None
        first_token_at = None
        try:
            for line in response.lines():
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    usage = event["usage"]
                if event.get("timings"):
                    timings = event["timings"]
                for choice in event.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                    if piece:
                        if first_token_at is None:
                            first_token_at = time.perf_counter()
                        pieces.append(piece)
                        if on_token is not None:
                            on_token(piece)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        finally:
            # Closing the connection is what makes llama-server stop generating and free the slot.
            response.close()
        # llama-server's timings: prompt_n tokens evaluated now, cache_n reused from the slot's cache.
        evaluated = timings.get("prompt_n")
        cached = timings.get("cache_n", 0)
        result = generation.GenerationResult(
            text="".join(pieces).strip(),
            prompt_tokens=int(usage.get("prompt_tokens") or ((evaluated or 0) + (cached or 0))),
            completion_tokens=int(usage.get("completion_tokens") or timings.get("predicted_n") or 0),
            seconds=time.perf_counter() - started,
            finish_reason=finish or "stop",
            cached_prompt_tokens=int(cached or 0),
            first_token_seconds=None if first_token_at is None else first_token_at - started,
        )
        return result


class _Response:
    """A minimal HTTP/1.1 response reader whose every wait for data is a select() with a short
    timeout and a call of `waiting` in between (http.client's reads cannot be resumed after a
    socket timeout, and a blocking read would not see a statement cancel)."""

    def __init__(self, sock, waiting, what):
        self.sock, self.waiting, self.what = sock, waiting, what
        self.buf = b""
        self.status = None
        self.headers = {}
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        """Reads more into buf; False at the end of the stream."""
        if self.eof:
            return False
        self.waiting()    # also while data flows: a cancel must not wait for the stream to pause
        while not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            ready, _, _ = select.select([self.sock], [], [], READ_POLL_S)
            if ready:
                break
            self.waiting()
        try:
            data = self.sock.recv(65536)
        except OSError as e:
            raise self._gone(e) from None
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _gone(self, why):
        return errors.RuvllmError(
            CONNECTION_FAILURE, f"{self.what} went away during the request: {why}",
            hint="The supervisor restarts a server that exited; ask again (SELECT * FROM "
                 "ruvllm.inference_servers shows its state and restarts).")

    def _line(self):
        while b"\n" not in self.buf:
            if not self._fill():
                raise self._gone("connection closed")
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _exactly(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise self._gone("connection closed")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def begin(self):
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise self._gone(f"not an HTTP response: {parts!r}")
        self.status = int(parts[1])
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def chunks(self):
        """The body, decoded from chunked transfer encoding or as it comes."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                yield self._exactly(size)
                self._line()
        elif "content-length" in self.headers:
            yield self._exactly(int(self.headers["content-length"]))
        else:
            while self.buf or self._fill():
                out, self.buf = self.buf, b""
                yield out

    def read_all(self):
        return b"".join(self.chunks())

    def lines(self):
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                yield line
        if pending:
            yield pending


# --- operators' view ------------------------------------------------------------------------------

def slots_busy(port, timeout=1.0):
    """Slots of a supervised server generating now (None when it does not answer)."""
    if not port:
        return None
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=timeout)
    try:
        conn.request("GET", "/slots")
        response = conn.getresponse()
        if response.status != 200:
            return None
        slots = json.loads(response.read())
        return sum(1 for s in slots if s.get("is_processing") or s.get("state") == 1)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def health(plpy):
    """The inference part of ruvllm_health(): (checks, problems)."""
    mode = setting(plpy, "ruvllm.inference", "in_process")
    servers = []
    problems = []
    for row in plpy.execute("SELECT * FROM ruvllm._inference_servers()"):
        entry = {k: row[k] for k in ("model", "state", "pid", "port", "restarts", "last_error")}
        entry["started_at"] = None if row["started_at"] is None else str(row["started_at"])
        entry["slots_busy"] = slots_busy(row["port"]) if row["state"] == "running" else None
        servers.append(entry)
        if mode == "server" and row["state"] != "running":
            problems.append(("degraded", f"inference server for {row['model']} is {row['state']}: "
                                         f"{row['last_error']}"))
    if mode == "server" and not servers:
        problems.append(("critical", "ruvllm.inference is server but no inference server is supervised "
                                     "(the server-wide ruvllm.inference must be server)"))
    return {"mode": mode, "servers": servers}, problems


# --- streaming to SQL clients ---------------------------------------------------------------------

class _Abandoned(BaseException):
    """The SQL client stopped reading the stream (its cursor was closed)."""


class _PlpyProxy:
    """plpy for the pipeline running in a helper thread: each call is run by the SQL function's own
    thread (the only one that may enter PostgreSQL) and its result or error handed back."""

    def __init__(self, plpy, outbox):
        self._plpy = plpy
        self._outbox = outbox
        self.abandoned = False

    def __getattr__(self, name):
        target = getattr(self._plpy, name)
        if not callable(target) or isinstance(target, type):
            return target

        def call(*args, **kwargs):
            if self.abandoned:
                raise _Abandoned()
            reply = queue.Queue(maxsize=1)
            self._outbox.put(("call", (target, args, kwargs, reply)))
            ok, value = reply.get()
            if ok:
                return value
            raise value
        return call


class _StreamingBackend(generation.GenerationBackend):
    def __init__(self, inner, on_token):
        self.inner, self.on_token = inner, on_token

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name in ("inner", "on_token"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.inner, name, value)

    def count_tokens(self, model, text):
        return self.inner.count_tokens(model, text)

    def count_tokens_many(self, model, texts):
        return self.inner.count_tokens_many(model, texts)

    def generate(self, model, prompt, **kwargs):
        if isinstance(self.inner, ServerBackend):
            return self.inner.generate(model, prompt, on_token=self.on_token, **kwargs)
        result = self.inner.generate(model, prompt, **kwargs)   # in-process: one piece at the end
        if result.text:
            self.on_token(result.text)
        return result


def stream_rows(plpy, run, query, session_id=None, constraints=None):
    """ruvllm_query_stream's rows: stream()'s, with the response as JSON text for jsonb."""
    for seq, token, response in stream(plpy, run, query, session_id, constraints):
        yield seq, token, None if response is None else json.dumps(response)


def stream(plpy, run, query, session_id=None, constraints=None):
    """ruvllm_query_stream: yields (seq, token, response) rows as the answer is generated; the last
    row has token NULL and the response ruvllm_query returns. `run` is query.run (same witness row)."""
    outbox = queue.Queue()
    proxy = _PlpyProxy(plpy, outbox)
    backend = _StreamingBackend(backend_for(plpy), lambda piece: outbox.put(("token", piece)))
    # The helper thread must not call plpy itself: the proxy forwards to this thread.
    if isinstance(backend.inner, ServerBackend):
        plan = _plan(plpy, "interrupts", "SELECT pg_catalog.pg_sleep(0)", [])
        backend.inner.interrupt_check = lambda: proxy.execute(plan)
        if isinstance(backend.inner.endpoints, SupervisedEndpoints):
            backend.inner.endpoints.plpy = proxy

    def work():
        try:
            outbox.put(("done", run(proxy, query, session_id, constraints, backend=backend)))
        except BaseException as e:  # noqa: BLE001 - handed to the SQL function's thread
            outbox.put(("error", e))

    worker = threading.Thread(target=work, name="ruvllm-stream", daemon=True)
    worker.start()
    seq = 0
    try:
        while True:
            kind, value = outbox.get()
            if kind == "call":
                target, args, kwargs, reply = value
                try:
                    reply.put((True, target(*args, **kwargs)))
                except BaseException as e:  # noqa: BLE001 - raised again in the helper thread
                    reply.put((False, e))
            elif kind == "token":
                seq += 1
                yield seq, value, None
            elif kind == "done":
                seq += 1
                yield seq, None, value
                return
            else:
                raise value
    finally:
        proxy.abandoned = True
        # Calls in flight get an answer, so the helper thread can end.
        while worker.is_alive():
            try:
                kind, value = outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "call":
                value[3].put((False, _Abandoned()))
        worker.join(timeout=1.0)
