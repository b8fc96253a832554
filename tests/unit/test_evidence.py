"""Evidence selection, the grounding check, citations and the answer prompts, on hand-checked
cases. Vectors come from a bag-of-words embedder (a word's own axis), so which sentence is most
similar to which is checked by eye, not by MiniLM."""
import zlib

import numpy as np
import pytest

from ruvllm import evidence, generation, grounding

WITNESS_DOC = (
    "# The witness log\n\n"
    "Every call to ruvllm_query writes one row to the witness log, ruvllm.witness, whether the call\n"
    "succeeds or fails. The row records the query and the model the router chose.\n\n"
    "The witness log is partitioned by day on created_at. Rotating it means dropping or detaching old\n"
    "daily partitions: set how long to keep rows with ruvllm_set_retention('witness', '30 days').\n"
    "To rotate by hand, run ruvllm_apply_retention().")
FRANCE = "The capital of France is Paris. Paris lies on the river Seine."


def bag_embed(texts):
    """Unit vectors over stemmed content words: cosine = shared words, weighed. Words go to
    dimensions by CRC-32, not hash(), which differs between processes (PYTHONHASHSEED): a
    collision there made the best span depend on the run."""
    out = []
    for t in texts:
        v = np.zeros(4096, np.float32)
        for w in grounding.content_words(t):
            v[zlib.crc32(w.encode("utf-8")) % 4096] += 1.0
        n = np.linalg.norm(v)
        out.append(v / n if n else v)
    return np.stack(out)


@pytest.fixture(autouse=True)
def fresh_vector_cache():
    evidence._vectors.clear()
    yield
    evidence._vectors.clear()


def words(text):
    return len(text.split())


def test_sentences_leave_out_headings_and_keep_abbreviations():
    s = evidence.split_sentences(WITNESS_DOC)
    assert s[0].startswith("Every call to ruvllm_query") and s[0].endswith("succeeds or fails.")
    assert "# The witness log" not in " ".join(s)
    assert s[3].startswith("Rotating it means")
    assert evidence.split_sentences("Use a setting, e.g. ruvllm.k. Then ask.") == \
        ["Use a setting, e.g. ruvllm.k.", "Then ask."]
    # A citation after the full stop stays with its sentence.
    assert evidence.split_sentences("It is Paris. [1] It lies on the Seine [1].") == \
        ["It is Paris. [1]", "It lies on the Seine [1]."]
    assert evidence.split_sentences("- one item\n- two item") == ["- one item", "- two item"]


def test_a_sentence_that_leans_back_keeps_its_neighbour():
    assert evidence.leans_back("This means the log is rotated.")
    assert evidence.leans_back("Rotating it means dropping partitions.")
    assert not evidence.leans_back("The witness log is partitioned by day.")
    units, _ = evidence.candidate_units([(0, WITNESS_DOC, 1.0)])
    rotating = next(u for u in units if "Rotating it" in u.text)
    assert rotating.text.startswith("The witness log is partitioned by day on created_at. Rotating it")
    assert (rotating.first, rotating.last) == (2, 3)


def test_a_heading_is_read_with_the_sentence_after_it():
    assert evidence.is_heading("Index Types")
    assert evidence.is_heading("archive_command (string)")
    assert not evidence.is_heading("The witness log is partitioned.")
    assert not evidence.is_heading("It is.")     # short, but a sentence
    doc = ("archive_command (string)\n\nThe local shell command to execute to archive a completed WAL "
           "file segment. Any %p in the string is replaced by the path name of the file to archive.\n"
           "\nSee Also")
    units, sents = evidence.candidate_units([(0, doc, 1.0)])
    assert sents[0][0] == "archive_command (string)"
    # No unit is the heading alone; the sentence after it carries it. A final heading (nothing
    # after it) stays a unit of its own.
    assert [(u.first, u.last) for u in units] == [(0, 1), (2, 2), (3, 3)]
    assert units[0].text.startswith("archive_command (string) The local shell command")


BOOLEAN_DOC = ("Boolean Type\n\nThe boolean type can have several states.\n\n"
               "The input function accepts these string representations for the true state:\n\n"
               "true\n\nyes\n\non\n\nCase does not matter.")
TIMEOUT_DOC = ("deadlock_timeout (integer)\n\nThis is the amount of time to wait on a lock before "
               "checking for a deadlock. The default is one second (1s).\n\nIdeally the setting "
               "should exceed your typical transaction time.")


def test_a_list_is_read_with_the_sentence_that_announces_it():
    assert evidence.leans_forward("The input function accepts these string representations:")
    assert evidence.leans_forward("Index Types") and not evidence.leans_forward("Case does not matter.")
    units, sents = evidence.candidate_units([(0, BOOLEAN_DOC, 1.0)])
    # sentences: 0 heading, 1 "The boolean type ...", 2 the announcement, 3-5 the items, 6 "Case ..."
    assert [(u.first, u.last) for u in units] == [(0, 1), (2, 6)]
    assert units[1].text == ("The input function accepts these string representations for the true "
                             "state: true yes on Case does not matter.")
    # At most MAX_LEAD sentences that lean forward are read with the one after them.
    many = "Values:\n\n" + "\n\n".join(f"v{i}" for i in range(12)) + "\n\nThat is all."
    last = evidence.candidate_units([(0, many, 1.0)])[0][-1]
    assert last.last - last.first == evidence.MAX_LEAD


def test_a_unit_is_read_under_its_heading():
    units, sents = evidence.candidate_units([(0, TIMEOUT_DOC, 1.0)])
    assert [(u.first, u.last, u.heading) for u in units] == [(0, 1, None), (2, 2, 0), (3, 3, 0)]
    assert units[1].read == "deadlock_timeout (integer) ... The default is one second (1s)."
    q = "What is the default deadlock_timeout?"
    sel = evidence.select(q, bag_embed([q])[0], [(0, TIMEOUT_DOC, 1.0)], 256, words, embed=bag_embed,
                          max_units=1)
    best = sel.units[0]
    assert (best.first, best.last) == (2, 2)
    # The answer quotes the span under its heading (the setting it is about), and the prompt's
    # evidence carries the heading too, counted in the budget.
    assert evidence.extractive_answer(sel) == "deadlock_timeout (integer) ... The default is one second (1s). [1]"
    assert sel.nodes[0].sentences == [0, 2]
    assert sel.nodes[0].text == "deadlock_timeout (integer) ... The default is one second (1s)."
    room = words("deadlock_timeout (integer)") + words("The default is one second (1s).") + evidence.NODE_OVERHEAD_TOKENS
    assert evidence.select(q, bag_embed([q])[0], [(0, TIMEOUT_DOC, 1.0)], room, words,
                           embed=bag_embed, max_units=1).nodes[0].sentences == [0, 2]


def test_which_questions_ask_for_a_name():
    assert evidence.asks_for_name("Which setting logs long statements?")
    assert evidence.asks_for_name("What function reloads the configuration?")
    assert evidence.asks_for_name("What options does VACUUM take?")
    assert not evidence.asks_for_name("What is the default fillfactor?")
    assert not evidence.asks_for_name("How do I rotate the witness log?")
    assert not evidence.asks_for_name("")


def test_a_name_is_new_when_the_question_does_not_have_it():
    q = "Which setting logs statements that run longer than log_min_duration_sample allows?"
    assert evidence.names_something_new("Set log_min_duration_statement to 250ms.", q)
    assert evidence.names_something_new("Call pg_reload_conf() after editing.", q)
    assert evidence.names_something_new("Use TRUNCATE instead.", q)
    assert evidence.names_something_new("Edit postgresql.conf and reload.", q)
    assert evidence.names_something_new("Run pg_dump --schema-only to copy it.", q)
    assert evidence.names_something_new("The operator @> tests containment.", q)
    # The question's own name, plain words, and acronyms of three letters are no answer.
    assert not evidence.names_something_new("Compare it with log_min_duration_sample.", q)
    assert not evidence.names_something_new("Statements that run long are logged to the WAL.", q)


def test_a_question_for_a_name_prefers_the_unit_that_names_one(monkeypatch):
    doc = ("Statements that run for a long time can be logged with their duration.\n\n"
           "Long statements are logged when log_min_duration_statement is set.")
    q = "Which setting makes long statements logged with their duration?"
    sel = evidence.select(q, bag_embed([q])[0], [(0, doc, 1.0)], 256, words, embed=bag_embed, max_units=1)
    assert "log_min_duration_statement" in evidence.extractive_answer(sel)
    assert [u.names_new for u in sorted(sel.units, key=lambda u: u.first)] == [True]
    # Without the bonus the sentence that restates the question wins: the bonus decided it.
    evidence._vectors.clear()
    monkeypatch.setattr(evidence, "NAME_WEIGHT", 0.0)
    sel = evidence.select(q, bag_embed([q])[0], [(0, doc, 1.0)], 256, words, embed=bag_embed, max_units=1)
    assert "log_min_duration_statement" not in evidence.extractive_answer(sel)
    # A question that asks for no name gives no bonus.
    prep = evidence.candidates("How are long statements logged?", [(0, doc, 1.0)])
    assert not any(u.names_new for u in prep.units)


def test_the_best_span_answers_and_is_within_budget():
    q = "How do I rotate the witness log?"
    qv = bag_embed([q])[0]
    nodes = [(4, WITNESS_DOC, 0.6), (2, FRANCE, 0.1)]
    sel = evidence.select(q, qv, nodes, 256, lambda t: words(t), embed=bag_embed)
    best = sel.units[0]
    assert "Rotating it means dropping or detaching old daily partitions" in best.text
    # Only the witness document carries evidence: it is source 1, with its spans verbatim.
    assert [n.index for n in sel.nodes] == [4]
    assert all(span in " ".join(evidence.split_sentences(WITNESS_DOC)) for span in sel.nodes[0].spans)
    assert sel.context()[0][0] == 4
    # The budget holds: a tiny one keeps only the best unit's first words.
    small = evidence.select(q, qv, nodes, 10, lambda t: words(t), embed=bag_embed)
    assert len(small.nodes) == 1 and words(small.nodes[0].text) <= 10 - evidence.NODE_OVERHEAD_TOKENS


def test_spans_of_several_nodes_are_numbered_as_the_sources():
    q = "Which river does Paris lie on, and how is the witness log rotated?"
    qv = bag_embed([q])[0]
    sel = evidence.select(q, qv, [(0, WITNESS_DOC, 0.5), (1, FRANCE, 0.5)], 256, words,
                          embed=bag_embed, relative_floor=0.3)
    assert [n.index for n in sel.nodes] == [0, 1]
    paris = next(u for u in sel.units if "Seine" in u.text)
    assert sel.source_number(paris) == 2
    assert any(n == 2 and "Seine" in t for n, t, _ in sel.evidence_units())


def test_extractive_answer_is_verbatim_with_its_citation():
    q = "How do I rotate the witness log?"
    sel = evidence.select(q, bag_embed([q])[0], [(0, WITNESS_DOC, 1.0)], 256, words, embed=bag_embed)
    answer = evidence.extractive_answer(sel)
    assert answer.endswith("[1]")
    span = answer[:-len(" [1]")]
    assert span in " ".join(evidence.split_sentences(WITNESS_DOC))
    assert evidence.extractive_answer(evidence.select(q, None, [], 256, words)) == evidence.NOT_FOUND


def test_content_words_and_stems():
    assert grounding.content_words("The log is rotated; rotating logs") == ["log", "rotat", "rotat", "log"]
    assert grounding.citations("Paris [2], Seine [1] and [2].") == [2, 1]


def evidence_of(*texts):
    vecs = bag_embed(list(texts))
    return [(i + 1, t, v) for i, (t, v) in enumerate(zip(texts, vecs))]


def test_grounding_accepts_support_and_rejects_invention():
    ev = evidence_of("Rotating it means dropping or detaching old daily partitions.",
                     "The capital of France is Paris.")
    ok = grounding.check("You rotate it by dropping old daily partitions [1].", ev, embed=bag_embed)
    assert ok.grounded and ok.score == 1.0 and ok.sentences[0].best_source == 1
    invented = grounding.check("def rotate_witness_log(logs): for log in eyewitness_logs: log.rotate()",
                               ev, embed=bag_embed)
    assert not invented.grounded and invented.score == 0.0
    # One invented sentence among supported ones is enough.
    mixed = grounding.check("Old daily partitions are dropped. A cron job deletes rows every night.",
                            ev, embed=bag_embed)
    assert not mixed.grounded and [s.supported for s in mixed.sentences] == [True, False]
    assert 0 < mixed.score < 1
    # Cited to the wrong source, or to a source that is not there: not supported.
    assert not grounding.check("Old daily partitions are dropped [2].", ev, embed=bag_embed).grounded
    assert not grounding.check("Old daily partitions are dropped [7].", ev, embed=bag_embed).grounded
    # Nothing to check is not grounded either.
    assert not grounding.check("", ev, embed=bag_embed).grounded


def test_grounding_thresholds_are_the_settings():
    ev = evidence_of("Old daily partitions are dropped by retention.")
    answer = "Old partitions are removed nightly."    # old, partition: 2 of 4 content words
    assert not grounding.check(answer, ev, min_overlap=0.6, min_similarity=1.01).grounded
    assert grounding.check(answer, ev, min_overlap=0.5, min_similarity=1.01).grounded


def test_citations_are_added_to_supported_sentences():
    ev = evidence_of("Rotating it means dropping old daily partitions.", "The capital of France is Paris.")
    answer = "Old daily partitions are dropped. Paris is the capital of France."
    result = grounding.check(answer, ev, embed=bag_embed)
    assert grounding.add_citations(answer, result) == \
        "Old daily partitions are dropped [1]. Paris is the capital of France [2]."
    cited = "Paris is the capital [2]."
    assert grounding.add_citations(cited, grounding.check(cited, ev, embed=bag_embed)) == cited


CONTEXT = [(3, "The witness log is partitioned by day.", 0.9), (1, "Paris lies on the Seine.", 0.1)]
CHAT = generation.ModelSpec("smollm2-135m-instruct", "x.gguf", "chat")
BASE = generation.ModelSpec("gemma-3-270m", "y.gguf", "completion")


def test_the_chat_prompt_for_a_known_context():
    system, prompt, stop = generation.answer_prompt(CHAT, "How is the log split?", CONTEXT, style="evidence")
    assert system == ("Answer the question in one or two sentences, using only the numbered context. "
                      "Cite the context you use as [1], [2].")
    assert prompt == ("Context:\n[1] The witness log is partitioned by day.\n[2] Paris lies on the Seine.\n\n"
                      "Question: How is the log split?")
    assert stop is None


def test_the_few_shot_completion_prompt_for_a_known_context():
    system, prompt, stop = generation.answer_prompt(BASE, "How is the log split?", CONTEXT, style="evidence")
    assert system == (
        "Answer each question from its context, citing the context line as [n].\n\n"
        "Context:\n[1] The Eiffel Tower is in Paris. It was finished in 1889.\n"
        "Question: When was the Eiffel Tower finished?\n"
        "Answer: It was finished in 1889 [1].\n\n"
        "Context:\n[1] Backups run every night at 2:00.\n[2] A backup is kept for 14 days, then deleted.\n"
        "Question: How long is a backup kept?\n"
        "Answer: A backup is kept for 14 days [2].")
    assert prompt == ("Context:\n[1] The witness log is partitioned by day.\n[2] Paris lies on the Seine.\n"
                      "Question: How is the log split?\nAnswer:")
    assert stop == ("\n\n", "\nQuestion:", "\nContext:")


def test_documents_style_keeps_the_0_2_0_prompts():
    system, prompt, _ = generation.answer_prompt(CHAT, "q?", CONTEXT, style="documents")
    assert system.startswith("You are ruvllm, an assistant inside a PostgreSQL database.")
    assert prompt.endswith("\n\nQuestion: q?")
    system, prompt, stop = generation.answer_prompt(BASE, "q?", [], style="documents")
    assert system == "Answer the question briefly, using the context."
    assert prompt == "Context:\n(no context found)\n\nQuestion: q?\nAnswer:" and stop == ("\nQuestion:", "\n\n\n")


def test_the_sentences_to_count_are_known_before_selecting_and_all_it_counts():
    q = "How do I rotate the witness log?"
    qv = bag_embed([q])[0]
    nodes = [(4, WITNESS_DOC, 0.6), (2, FRANCE, 0.1)]
    prepared = evidence.candidates(q, nodes)
    everything = prepared.texts()
    assert "The capital of France is Paris." in everything       # unscored: every unit's sentences
    prepared.score(qv, nodes, embed=bag_embed)
    wanted = prepared.texts()
    # Scored: the units within RELATIVE_FLOOR of the best only; France's share no question word.
    assert set(wanted) < set(everything) and "The capital of France is Paris." not in wanted
    assert any("Rotating it means" in t for t in wanted)
    counted = []
    sel = evidence.select(q, qv, nodes, 256, lambda t: counted.append(t) or words(t), prepared=prepared)
    assert counted and set(counted) <= set(wanted)
    # The same selection as without preparing.
    again = evidence.select(q, qv, nodes, 256, words, embed=bag_embed)
    assert [u.text for u in sel.units] == [u.text for u in again.units]


def test_units_with_known_vectors_are_not_embedded_again():
    q = "How do I rotate the witness log?"
    nodes = [(0, WITNESS_DOC, 1.0)]
    prep = evidence.candidates(q, nodes)
    known = [bag_embed([u.read])[0] for u in prep.units]
    known[0] = None   # one is not known: only it is embedded

    asked = []

    def embed(texts):
        asked.extend(texts)
        return bag_embed(texts)
    prep.score(bag_embed([q])[0], nodes, embed, vectors=known)
    assert asked == [prep.units[0].read]
    assert evidence.unit_pieces(prep.units[0]) == list(range(prep.units[0].first, prep.units[0].last + 1))
    # The scores are those of embedding every unit.
    evidence._vectors.clear()
    again = evidence.candidates(q, nodes).score(bag_embed([q])[0], nodes, bag_embed)
    assert [round(u.score, 6) for u in prep.units] == [round(u.score, 6) for u in again.units]
