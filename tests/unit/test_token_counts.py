"""Token counts without repeated tokenisation: the backend's LRU of counts (generation.TokenCounts),
a request's batched counter (generation.RequestTokens) and the prompt cut that counts several
prefixes at once (attention._cut_to_fit). The tokenizer here counts words, so every number is
checked by hand; the real tokenizers are exercised by tests/integration/test_query.py."""
import pytest

from ruvllm import attention, errors, generation

SMALL = generation.ModelSpec("small", "/models/small.gguf", "chat", 2048)
OTHER = generation.ModelSpec("other", "/models/other.gguf", "chat", 2048)


class Words:
    """A tokenizer that counts words and remembers what it was asked."""

    def __init__(self):
        self.asked = []

    def __call__(self, model, texts):
        self.asked.append((model.name, list(texts)))
        return [len(t.split()) for t in texts]


def test_counts_many_texts_in_one_call_and_caches_them():
    words, counts = Words(), generation.TokenCounts()
    assert counts.count_many(SMALL, ["a b c", "d", "a b c", ""], words) == [3, 1, 3, 0]
    assert words.asked == [("small", ["a b c", "d", ""])]      # distinct texts, once
    assert counts.count_many(SMALL, ["d", "a b c"], words) == [1, 3]
    assert len(words.asked) == 1                               # all cached: no call
    assert counts.count_many(SMALL, ["d", "e f"], words) == [1, 2]
    assert words.asked[-1] == ("small", ["e f"])               # only the new one
    assert (counts.calls, counts.texts, len(counts)) == (2, 4, 4)
    assert counts.count_many(SMALL, [], words) == [] and counts.calls == 2


def test_counts_are_kept_per_model():
    words, counts = Words(), generation.TokenCounts()
    counts.count_many(SMALL, ["one two"], words)
    counts.count_many(OTHER, ["one two"], words)
    assert words.asked == [("small", ["one two"]), ("other", ["one two"])]


def test_the_least_recently_used_count_goes_first():
    words, counts = Words(), generation.TokenCounts(size=2)
    counts.count_many(SMALL, ["a", "b"], words)
    counts.count_many(SMALL, ["a"], words)          # a used again: b is now the oldest
    counts.count_many(SMALL, ["c"], words)          # over 2: b goes
    assert len(counts) == 2
    counts.count_many(SMALL, ["a", "c"], words)
    assert words.asked[-1] == ("small", ["c"])      # a and c were kept
    counts.count_many(SMALL, ["b"], words)
    assert words.asked[-1] == ("small", ["b"])      # b was not


def test_the_default_cache_holds_16k_counts():
    assert generation.TokenCounts().size == 16384 == generation.TOKEN_CACHE_SIZE


def test_a_tokenizer_that_loses_a_text_is_an_error():
    counts = generation.TokenCounts()
    with pytest.raises(errors.RuvllmError):
        counts.count_many(SMALL, ["a", "b"], lambda model, texts: [1])


def test_a_request_counts_what_it_announced_in_one_call():
    asked = []

    def many(texts):
        asked.append(list(texts))
        return [len(t.split()) for t in texts]
    count = generation.RequestTokens(many)
    count.want(["x y", "z"])
    count.want(["z", "q r s"])
    assert count("what is it") == 3
    assert asked == [["x y", "z", "q r s", "what is it"]]
    assert [count("x y"), count("q r s")] == [2, 3] and count.many(["z", "x y"]) == [1, 2]
    assert count.calls == 1
    assert count("new words") == 2 and asked[-1] == ["new words"] and count.calls == 2


class CountingWords:
    """count_tokens with .many, as RequestTokens has: a token a word; calls are counted."""

    def __init__(self):
        self.calls = 0

    def __call__(self, text):
        return self.many([text])[0]

    def many(self, texts):
        self.calls += 1
        return [len(t.split()) for t in texts]


def test_a_cut_near_its_guess_costs_one_call():
    text = " ".join(f"w{i}" for i in range(1, 31))
    count = CountingWords()
    assert attention._cut_to_fit(text, 10, count, about=30) == "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    assert count.calls == 1


def test_a_cut_far_from_its_guess_is_still_exact():
    # The guess (about 300 tokens: 1 word of 30) is far off; the search still finds 10 words.
    text = " ".join(f"w{i}" for i in range(1, 31))
    count = CountingWords()
    assert attention._cut_to_fit(text, 10, count, about=300) == "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    assert 1 < count.calls <= 3
    # Every limit from 0 to all the words, and a plain count_tokens (no .many) too.
    for limit in range(0, 32):
        # 0: not even "w1" (one token) fits, and no prefix of it but "" does.
        want = " ".join(text.split()[:limit])
        assert attention._cut_to_fit(text, limit, CountingWords()) == want
        assert attention._cut_to_fit(text, limit, lambda t: len(t.split())) == want


def test_a_cut_inside_one_long_word_counts_characters():
    assert attention._cut_to_fit("abcdefghij", 4, len) == "abcd"
    count = CountingWords()
    count.many = lambda texts: [len(t) for t in texts]
    assert attention._cut_to_fit("  abcdefghij klm", 7, count) == "abcdefg"


def test_the_per_text_counter_of_0_3_0_counts_each_text_when_asked():
    asked = []
    count = generation.PerTextTokens(lambda t: asked.append(t) or len(t.split()))
    count.want(["never counted"])
    assert count("a b") == 2 and count("a b") == 2 and count("c") == 1
    assert asked == ["a b", "a b", "c"] and count.calls == 3
    assert not hasattr(count, "many")   # a cut probes its prefixes one by one
