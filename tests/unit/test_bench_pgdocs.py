"""bench/pgdocs.py (the manual's section splitter) and bench/qa_metrics.py (answer and ranking
metrics of bench/answers and bench/retrieval) on hand-written input; and the questions of
bench/answers against the installed manual: every gold answer occurs in its gold section."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name, path):
    # By path under its own name: bench/ on sys.path would let bench modules shadow others.
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pgdocs = _load("bench_pgdocs", BENCH / "pgdocs.py")
M = _load("bench_qa_metrics", BENCH / "qa_metrics.py")

PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>19.5. Write Ahead Log</title></head>
<body><div class="navheader"><table><tr><th>19.5. Write Ahead Log</th></tr>
<tr><td><a href="prev.html">Prev</a></td></tr></table><hr /></div>
<div class="sect1" id="RUNTIME-CONFIG-WAL"><div class="titlepage"><div><div>
<h2 class="title">19.5. Write Ahead Log <a href="#RUNTIME-CONFIG-WAL" class="id_link">#</a></h2>
</div></div></div><div class="toc"><dl class="toc"><dt><a href="#X">19.5.1. Settings</a></dt></dl></div>
<p>For   additional
 information see <a class="xref" href="wal.html">Section 28.5</a>.</p>
<div class="sect2" id="RUNTIME-CONFIG-WAL-CHECKPOINTS"><div class="titlepage"><div><div>
<h3 class="title">19.5.2. Checkpoints <a href="#RUNTIME-CONFIG-WAL-CHECKPOINTS" class="id_link">#</a></h3>
</div></div></div>
<div class="variablelist"><dl class="variablelist"><dt id="GUC-CHECKPOINT-TIMEOUT"><span class="term">
<code class="varname">checkpoint_timeout</code> (<code class="type">integer</code>)</span></dt>
<dd><p>The default is five minutes (<code class="literal">5min</code>).</p></dd></dl></div>
<div class="sect3" id="DEEPER"><h4 class="title">Deeper</h4><p>Still checkpoints.</p></div>
<pre class="programlisting">SELECT 1;
  SELECT   2;</pre>
<div class="table" id="T1"><table><tr><th>Name</th><th>Size</th></tr>
<tr><td>smallint</td><td>2 bytes</td></tr></table></div>
</div>
<p>Back in the sect1.</p>
<div class="refsect1" id="id-1.9.3.69.5"><h2>Generated id</h2><p>Stays in the sect1.</p></div>
</div>
<div class="navfooter"><hr /><table><tr><td><a href="next.html">Next</a></td></tr></table></div>
</body></html>"""


def test_splitter_sections_titles_and_text():
    secs = pgdocs.split_sections(PAGE, "runtime-config-wal.html")
    assert [s["source"] for s in secs] == [
        "runtime-config-wal.html#RUNTIME-CONFIG-WAL",
        "runtime-config-wal.html#RUNTIME-CONFIG-WAL-CHECKPOINTS"]
    top, checkpoints = secs
    assert top["title"] == "19.5. Write Ahead Log"
    assert checkpoints["title"] == "19.5.2. Checkpoints"
    # Navigation, tables of contents and anchor links are gone; white space of prose collapsed.
    for s in secs:
        assert "Prev" not in s["text"] and "Next" not in s["text"] and "#" not in s["text"]
        assert "19.5.1. Settings" not in s["text"]
    # A section's text is its own: the sect2 is not repeated in the sect1, which keeps what
    # follows it and what an element with a generated id holds.
    assert top["text"] == ("For additional information see Section 28.5.\n\nBack in the sect1.\n\n"
                           "Generated id\n\nStays in the sect1.")
    text = checkpoints["text"]
    assert "checkpoint_timeout (integer)" in text
    assert "The default is five minutes (5min)." in text
    assert "Deeper\n\nStill checkpoints." in text          # sect3 stays in its sect2
    assert "SELECT 1;\n  SELECT   2;" in text               # code as written
    assert "Name | Size\n\nsmallint | 2 bytes" in text      # a table row per paragraph


def test_document_for_ingest():
    sec = {"source": "a.html#B", "section_id": "B", "title": "1.2. Bee", "text": "Some text."}
    assert pgdocs.document(sec) == {"content": "1.2. Bee\n\nSome text.", "node_type": "Document",
                                    "source": "a.html#B", "metadata": {"section": "1.2. Bee"}}


def test_normalisation_and_contains():
    assert M.normalise("The default is  FIVE minutes (5min). [1]") == "the default is five minutes 5min"
    assert M.tokens("use @> or scram-sha-256, 4.0 and $user.") == ["use", "@>", "or", "scram-sha-256",
                                                                    "4.0", "and", "$user"]
    assert M.contains("It is 5MIN, see [2].", ["5min"])
    assert M.contains("Set checkpoint_timeout\nto five  minutes", ["five minutes", "5min"])
    assert not M.contains("The default is 30 workers", ["3"])      # whole tokens only
    assert not M.contains("Not found in memory.", ["5min"])
    assert not M.contains("anything", [""])


def test_token_f1_by_hand():
    # answer: [the, default, is, 5min] vs gold [5min]: p = 1/4, r = 1, F1 = 2*(1/4)/(5/4) = 0.4
    assert M.token_f1("The default is 5min.", ["5min"]) == pytest.approx(0.4)
    # best of the golds; counts respect multiplicity: [a, a, b] vs [a, b]: common 2, p 2/3, r 1
    assert M.token_f1("a a b", ["zzz", "a b"]) == pytest.approx(0.8)
    assert M.token_f1("", ["x"]) == 0.0


def test_supported_share_by_hand():
    passages = ["The default value of checkpoint_timeout is 5min.", "Checkpoints are written by the checkpointer."]
    # content tokens [default, value, checkpoint_timeout, 5min]: all in the passages
    assert M.supported_share("The default value of checkpoint_timeout is 5min [1].", passages) == 1.0
    # [default, 30s, rotates, hourly]: only "default" is there
    assert M.supported_share("The default is 30s; it rotates hourly.", passages) == pytest.approx(0.25)
    assert M.supported_share("It is.", passages) == 1.0     # no content token, nothing claimed
    assert M.supported_share("5min", []) == 0.0


def test_citations():
    assert M.citations("Use X [2]. Also Y [1, 3] and again [2].") == [2, 1, 3]
    assert M.citations("no marks") == []


def test_ranking_metrics_by_hand():
    ranked = ["a", "g", "a", "b"]
    rel = {"g"}
    assert M.recall_at(ranked, rel, 10) == 1.0
    assert M.recall_at(ranked, rel, 1) == 0.0
    assert M.mrr(ranked, rel) == 0.5
    # g at rank 2: DCG = 1/log2(3), ideal 1/log2(2) = 1
    assert M.ndcg_at(ranked, rel, 10) == pytest.approx(1 / math.log2(3))
    # a relevant document counts once: its second chunk at rank 3 adds nothing
    assert M.ndcg_at(["x", "g", "g"], {"g"}, 10) == pytest.approx(1 / math.log2(3))
    # two relevant, found at 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    assert M.ndcg_at(["g", "x", "h"], {"g", "h"}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert M.ndcg_at(["x"], {"g"}, 10) == 0.0 and M.mrr([], {"g"}) == 0.0


def test_percentile():
    assert M.percentile([4, 1, 3, 2], 50) == 2.5
    assert M.percentile([1, None, 3], 90) == pytest.approx(2.8)
    assert M.percentile([], 50) is None


QUESTIONS = [json.loads(line) for line in
             (BENCH / "answers" / "questions.jsonl").read_text().splitlines() if line.strip()]


def test_questions_file_shape():
    answerable = [q for q in QUESTIONS if q["answerable"]]
    unanswerable = [q for q in QUESTIONS if not q["answerable"]]
    assert len(answerable) >= 120 and len(unanswerable) >= 30
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    assert len({q["question"].lower() for q in QUESTIONS}) == len(QUESTIONS)
    for q in answerable:
        assert q["answers"] and all(a.strip() for a in q["answers"]) and "#" in q["source"], q
    for q in unanswerable:
        assert q["answers"] == [] and q["source"] is None, q
    # Spread over many chapters of the manual.
    assert len({q["source"].split(".html")[0].split("-")[0] for q in answerable}) >= 20


@pytest.mark.skipif(not (pgdocs.MANUAL / "index.html").exists(),
                    reason=f"the PostgreSQL manual is not installed at {pgdocs.MANUAL} (postgresql-doc-17)")
def test_gold_answers_occur_in_their_sections():
    pages = sorted({q["source"].split("#")[0] for q in QUESTIONS if q["answerable"]})
    sections = pgdocs.section_map(pages)
    missing = []
    for q in QUESTIONS:
        if not q["answerable"]:
            continue
        sec = sections.get(q["source"])
        if sec is None:
            missing.append((q["id"], q["source"], "no such section"))
            continue
        if not any(M.contains(sec["title"] + "\n" + sec["text"], [a]) for a in q["answers"]):
            missing.append((q["id"], q["source"], q["answers"]))
    assert not missing
