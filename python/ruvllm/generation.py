"""Text generation behind one interface.

Everything that generates goes through GenerationBackend. Today the only backend runs llama.cpp
in the backend process; a model server out of process (the same path as a remote llama.cpp or
vLLM server) is a second backend, not a rewrite: it keeps a native crash from restarting the whole
PostgreSQL server and lets backends share one loaded model.
"""
import collections
import dataclasses
import os
import threading
import time

from . import errors

DEFAULT_MODELS_DIR = "/usr/local/share/ruvllm/models"
# Token counts a backend keeps, by (model file, text): a session's history, the question asked
# again, and the sentences of the memory nodes that keep coming back are tokenised once.
TOKEN_CACHE_SIZE = 16384


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    prompt_style: str  # 'chat' (the model's chat template), 'completion' (plain text prompt) or
                       # 'extractive' (no model: the answer is the best evidence, verbatim)
    n_ctx: int = 2048


def bundled_models(models_dir=None):
    """The models `make env` and the Docker image install, by name."""
    d = models_dir or os.environ.get("RUVLLM_MODELS_DIR") or DEFAULT_MODELS_DIR
    return {
        "smollm2-135m-instruct": ModelSpec(
            "smollm2-135m-instruct", os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf"), "chat", 2048),
        # Gemma-3-270M here is the *base* model: it continues text, it does not follow a chat.
        "gemma-3-270m": ModelSpec(
            "gemma-3-270m", os.path.join(d, "gemma-3-270m-q4_k_m.gguf"), "completion", 2048),
    }


@dataclasses.dataclass
class GenerationResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str
    # An inference server's: prompt tokens taken from its cache, and seconds to the first token.
    cached_prompt_tokens: int = None
    first_token_seconds: float = None


# The prompts of ruvllm.answer_style = documents (0.2.0's): whole nodes as context.
DOCUMENTS_SYSTEM_PROMPT = ("You are ruvllm, an assistant inside a PostgreSQL database. Answer the question "
                           "briefly, using the numbered context when it is relevant.")
DOCUMENTS_COMPLETION_INSTRUCTION = "Answer the question briefly, using the context."
DOCUMENTS_COMPLETION_STOP = ("\nQuestion:", "\n\n\n")

# The prompts of ruvllm.answer_style = evidence (README, "Prompts"): the numbered spans, an
# instruction to answer from them only and cite them. Chat models get it as the system message;
# the base Gemma model continues text, so it gets two worked examples to continue from instead.
EVIDENCE_SYSTEM_PROMPT = ("Answer the question in one or two sentences, using only the numbered "
                          "context. Cite the context you use as [1], [2].")
EVIDENCE_FEW_SHOT = (
    "Answer each question from its context, citing the context line as [n].\n\n"
    "Context:\n[1] The Eiffel Tower is in Paris. It was finished in 1889.\n"
    "Question: When was the Eiffel Tower finished?\n"
    "Answer: It was finished in 1889 [1].\n\n"
    "Context:\n[1] Backups run every night at 2:00.\n[2] A backup is kept for 14 days, then deleted.\n"
    "Question: How long is a backup kept?\n"
    "Answer: A backup is kept for 14 days [2].\n\n")
EVIDENCE_COMPLETION_STOP = ("\n\n", "\nQuestion:", "\nContext:")


def chat_messages(system, history, prompt):
    """A chat model's messages: the system prompt, the session's earlier turns unchanged (so the
    evaluated prefix is reused, in a backend or in an inference server's slot), then the question."""
    messages = [{"role": "system", "content": system}] if system else []
    for question, answer in history:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": prompt})
    return messages


def answer_prompt(spec, question, context, style="documents"):
    """(system, prompt, stop) for an answer from spec's model; context: [(index, text, score)],
    numbered [1].. in order. style: ruvllm.answer_style (evidence | documents)."""
    lines = [f"[{i + 1}] {text}" for i, (_, text, _) in enumerate(context)]
    ctx = "\n".join(lines) if lines else "(no context found)"
    if style == "evidence":
        if spec.prompt_style == "chat":
            return EVIDENCE_SYSTEM_PROMPT, f"Context:\n{ctx}\n\nQuestion: {question}", None
        return EVIDENCE_FEW_SHOT.rstrip("\n"), f"Context:\n{ctx}\nQuestion: {question}\nAnswer:", \
            EVIDENCE_COMPLETION_STOP
    if spec.prompt_style == "chat":
        return DOCUMENTS_SYSTEM_PROMPT, f"Context:\n{ctx}\n\nQuestion: {question}", None
    return DOCUMENTS_COMPLETION_INSTRUCTION, f"Context:\n{ctx}\n\nQuestion: {question}\nAnswer:", \
        DOCUMENTS_COMPLETION_STOP


class TokenCounts:
    """An LRU of token counts by (model file, text), at most `size` of them, in front of a
    tokenizer that counts many texts in one call.

    `count_many` asks the tokenizer once for all the texts it has not seen (or none), so a
    request that gathers its texts first costs one tokenizer call at most. `calls` and `texts`
    say how often the tokenizer was called and how many texts it counted (bench/query reads them).
    """

    def __init__(self, size=TOKEN_CACHE_SIZE):
        self.size = int(size)
        self._counts = collections.OrderedDict()
        self.calls = 0
        self.texts = 0

    def __len__(self):
        return len(self._counts)

    def count_many(self, model, texts, tokenize_many):
        """The token counts of texts, in order; tokenize_many(model, texts) -> counts is called
        once with the distinct texts not cached, or not at all."""
        texts = list(texts)
        out = [None] * len(texts)
        missing = {}
        for i, text in enumerate(texts):
            key = (model.path, text)
            n = self._counts.get(key)
            if n is None:
                missing.setdefault(text, []).append(i)
            else:
                self._counts.move_to_end(key)
                out[i] = n
        if missing:
            todo = list(missing)
            counts = [int(n) for n in tokenize_many(model, todo)]
            if len(counts) != len(todo):
                raise errors.RuvllmError(
                    "58000", f"the tokenizer of model '{model.name}' counted {len(counts)} texts of {len(todo)}")
            self.calls += 1
            self.texts += len(todo)
            for text, n in zip(todo, counts):
                self._counts[(model.path, text)] = n
                for i in missing[text]:
                    out[i] = n
            while len(self._counts) > self.size:
                self._counts.popitem(last=False)
        return out

    def clear(self):
        self._counts.clear()


class RequestTokens:
    """count_tokens(text) for one request that counts its texts in batches: the texts it will
    (or may) need are announced first (`want`), and the first count that finds its text missing
    asks the backend for it and every text announced since, in one call.

    Counts are the backend's own (exact); this only decides when they are asked for."""

    def __init__(self, count_many):
        self._count_many = count_many
        self._known = {}
        self._wanted = {}
        self.calls = 0

    def want(self, texts):
        for text in texts:
            if text not in self._known:
                self._wanted[text] = None

    def many(self, texts):
        """Counts of texts, in order: the missing ones (and those announced) in one call."""
        texts = list(texts)
        self.want(texts)
        if self._wanted:
            todo = list(self._wanted)
            self._wanted = {}
            self.calls += 1
            self._known.update(zip(todo, self._count_many(todo)))
        return [self._known[t] for t in texts]

    def __call__(self, text):
        n = self._known.get(text)
        return n if n is not None else self.many([text])[0]


class PerTextTokens:
    """0.3.0's counting, kept for bench/query's side-by-side run (query.PER_TEXT_TOKEN_COUNTS):
    each count asks the backend's count_tokens for one text, when it is needed; nothing is
    gathered first (want does nothing) and a cut's prefixes are counted one by one (no many)."""

    def __init__(self, count_one):
        self._count_one = count_one
        self.calls = 0

    def want(self, texts):
        pass

    def __call__(self, text):
        self.calls += 1
        return self._count_one(text)


class GenerationBackend:
    """What the pipeline needs from a generator. A backend implements count_tokens_many, or
    count_tokens (then count_tokens_many counts one text at a time)."""

    def generate(self, model, prompt, *, max_tokens=128, temperature=0.7, top_p=0.9,
                 system=None, seed=None, history=(), stop=None):
        """history: earlier (question, answer) turns of the session, oldest first."""
        raise NotImplementedError

    def count_tokens(self, model, text):
        """The tokens of text in model's tokenizer (no BOS, special tokens as text)."""
        return self.count_tokens_many(model, [text])[0]

    def count_tokens_many(self, model, texts):
        """count_tokens of each text, in order, with as few tokenizer calls as the backend can."""
        if type(self).count_tokens is GenerationBackend.count_tokens:
            raise NotImplementedError
        return [self.count_tokens(model, text) for text in texts]


class LlamaCppBackend(GenerationBackend):
    """llama.cpp in this process, models loaded lazily and kept in an LRU of bounded size.

    Models are memory-mapped, so backends that load the same file share its pages.
    """

    def __init__(self, max_loaded=2, n_threads=None):
        self.max_loaded = max_loaded
        self.n_threads = n_threads
        self._loaded = collections.OrderedDict()
        self._lock = threading.Lock()
        self.token_counts = TokenCounts()

    def _llama(self, model):
        with self._lock:
            llm = self._loaded.get(model.path)
            if llm is not None:
                self._loaded.move_to_end(model.path)
                return llm
            if not os.path.isfile(model.path):
                raise errors.RuvllmError(
                    "58P01", f"model file for '{model.name}' not found: {model.path}",
                    hint="Install the model packages (make env, or docker/Dockerfile) or register "
                         "the model with its real path.")
            try:
                import llama_cpp
            except ImportError as e:
                raise errors.RuvllmError(
                    "58P01", f"llama-cpp-python is not importable by the server's Python: {e}",
                    hint="pip install -r python/requirements.txt into the Python PL/Python uses.")
            while len(self._loaded) >= max(1, self.max_loaded):
                _, old = self._loaded.popitem(last=False)
                old.close()
            llm = llama_cpp.Llama(model_path=model.path, n_ctx=model.n_ctx, use_mmap=True,
                                  n_threads=self.n_threads, verbose=False)
            self._loaded[model.path] = llm
            return llm

    def loaded(self):
        return list(self._loaded)

    def count_tokens_many(self, model, texts):
        return self.token_counts.count_many(model, texts, self._tokenize_many)

    def _tokenize_many(self, model, texts):
        """Counts from llama.cpp's tokenizer, without the tokens: llama_tokenize with no room for
        them returns minus their number. (Llama.tokenize allocates and zeroes an array of the
        model's training context, 8K-32K tokens, on every call: most of what a count cost.)"""
        llm = self._llama(model)
        import llama_cpp
        vocab = llm._model.vocab
        out = []
        for text in texts:
            data = text.encode("utf-8")
            n = llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, False)
            if n > 0 or n == -2**31:   # tokens written into no room, or an int32 overflow
                raise errors.RuvllmError(
                    "58000", f"llama_tokenize returned {n} for a text of {len(data)} bytes")
            out.append(-n)
        return out

    def generate(self, model, prompt, *, max_tokens=128, temperature=0.7, top_p=0.9,
                 system=None, seed=None, history=(), stop=None):
        llm = self._llama(model)
        started = time.perf_counter()
        kwargs = dict(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        if seed is not None:
            kwargs["seed"] = seed
        if stop:
            kwargs["stop"] = list(stop)
        # The session's earlier turns come first and unchanged, so llama.cpp finds them as the
        # prefix of what it evaluated last time and reuses that KV state in this backend.
        if model.prompt_style == "chat":
            out = llm.create_chat_completion(messages=chat_messages(system, history, prompt), **kwargs)
            choice = out["choices"][0]
            text = choice["message"]["content"] or ""
        else:
            turns = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in history)
            full = (f"{system}\n\n" if system else "") + turns + prompt
            out = llm.create_completion(full, **kwargs)
            choice = out["choices"][0]
            text = choice["text"]
        usage = out.get("usage", {})
        return GenerationResult(
            text=text.strip(),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            seconds=time.perf_counter() - started,
            finish_reason=choice.get("finish_reason") or "stop",
        )


_default_backend = None


def default_backend():
    global _default_backend
    if _default_backend is None:
        _default_backend = LlamaCppBackend()
    return _default_backend


def generate_text(prompt, *, model_name="smollm2-135m-instruct", max_tokens=64, temperature=0.0,
                  top_p=1.0, models_dir=None, backend=None):
    """Generate with a bundled model (the smoke path `ruvllm_generate` uses)."""
    if prompt is None or not str(prompt).strip():
        raise errors.invalid("prompt must not be empty")
    if not 1 <= int(max_tokens) <= 4096:
        raise errors.invalid(f"max_tokens must be between 1 and 4096, not {max_tokens}")
    models = bundled_models(models_dir)
    spec = models.get(model_name)
    if spec is None:
        raise errors.RuvllmError(
            errors.UNDEFINED_OBJECT, f"unknown model '{model_name}'",
            hint="Bundled models: " + ", ".join(sorted(models)))
    return (backend or default_backend()).generate(
        spec, prompt, max_tokens=int(max_tokens), temperature=temperature, top_p=top_p)
