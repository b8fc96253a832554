"""The PostgreSQL 17 manual as a memory: bench/answers, bench/retrieval and `make demo DOCS=postgres`
read it from here.

The manual is Debian's postgresql-doc-17 (HTML, /usr/share/doc/postgresql-doc-17/html in the root).
Each page is split into sections by the ids the DocBook stylesheets give them: `sect1`, `sect2`,
`refentry` (an SQL command or program page) and `refsect2` elements with an id of their own become
sections (and a chapter's or appendix's own text before its first section); deeper or id-less parts (`sect3`, `refsect1` with a generated `id-1.2.3` id) stay in the
section around them. Navigation (header, footer, tables of contents, the `#` anchor links) is left
out. A section's source is "page.html#SECTION-ID", its metadata {"section": title}, and its content
starts with its title; ruvllm_ingest_many cuts long sections into chunks (Follows edges between
them), so every chunk of a section shares its source.

Standard library only (html.parser): it runs in the root's Python and in unit tests alike.
"""
import html.parser
import json
import os
import re
import time
from pathlib import Path

MANUAL = Path(os.environ.get("RUVLLM_PGDOCS", "/usr/share/doc/postgresql-doc-17/html"))

# Element classes that start a section when they carry a stable id.
SECTION_CLASSES = {"sect1", "sect2", "refentry", "refsect2", "chapter", "appendix", "preface"}
# Subtrees that are navigation, not content.
SKIP_CLASSES = {"navheader", "navfooter", "toc", "id_link", "indexterm"}
# Ids the stylesheets generate (id-1.9.3.69.5) change between manual versions: not a section.
_GENERATED_ID = re.compile(r"^id-[0-9.]+$|^id[0-9]")
BLOCK_TAGS = {"p", "div", "pre", "table", "tr", "li", "dt", "dd", "dl", "ul", "ol", "h1", "h2",
              "h3", "h4", "h5", "h6", "br", "hr", "blockquote", "caption", "thead", "tbody"}
VOID_TAGS = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"}
# A section shorter than this many words (a chapter's title page with only its table of contents)
# is left out.
MIN_WORDS = 12

# The chapters the questions of bench/answers come from, plus neighbours (by page-name prefix):
# the slice `slice_pages("default")` loads. "all" is the whole manual.
CORE_PREFIXES = (
    "runtime-config", "sql-", "datatype", "functions", "backup", "continuous-archiving",
    "warm-standby", "hot-standby", "logical-replication", "wal", "routine-vacuuming", "indexes",
    "mvcc", "explicit-locking", "transaction-iso", "ddl", "queries", "textsearch", "auth",
    "client-auth", "app-", "monitoring", "pgstat", "storage", "planner", "using-explain",
    "populate", "performance-tips", "locale", "charset", "collation", "tutorial", "plpgsql",
    "kernel-resources", "server-", "upgrading", "creating-cluster", "runtime", "database-roles",
    "role-", "user-manag", "manage-ag", "ssl-tcp", "encryption", "libpq-connect", "libpq-envars",
    "libpq-pgpass", "libpq-ssl", "rangetypes", "arrays", "rowtypes", "domains", "jsonb",
    "gin", "gist", "brin", "hash", "btree", "spgist", "pgstatstatements", "pgtrgm", "amcheck",
    "pgbuffercache", "pgprewarm", "postgres-fdw", "file-fdw", "dblink", "hstore", "ltree",
    "citext", "pgcrypto", "tablefunc", "uuid-ossp", "trigger", "event-trigger", "rules",
    "sql-syntax", "sql-expressions", "typeconv", "xfunc", "extend", "limits", "disk",
    "maintenance", "regress", "glossary", "sql-keywords", "errcodes", "parallel", "jit",
    "tableam", "pgwaldump", "pgrewind", "pgbasebackup", "pgupgrade", "high-availability",
    "different-replication", "different-", "preventing", "protocol-replication",
)


class _SectionSplitter(html.parser.HTMLParser):
    """Walks one page; collects [section id, title, text] in document order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections = []        # [id, title parts, text parts]
        self.stack = []           # per open element: (tag, opens_section, skips)
        self.current = []         # stack of indexes into self.sections
        self.skip_depth = 0
        self.pre_depth = 0
        self.title_depth = 0      # inside a heading that titles the current section
        self.title_taken = set()  # sections whose title is complete

    def handle_starttag(self, tag, attrs):
        if tag in VOID_TAGS:
            if tag in BLOCK_TAGS:
                self._text("\n")
            return
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        skips = bool(classes & SKIP_CLASSES) or tag in ("script", "style", "head")
        opens = False
        sid = a.get("id")
        if (not self.skip_depth and tag == "div" and classes & SECTION_CLASSES and sid
                and not _GENERATED_ID.match(sid)):
            self.sections.append([sid, [], []])
            self.current.append(len(self.sections) - 1)
            opens = True
        heading = False
        if (not self.skip_depth and self.current and self.current[-1] not in self.title_taken
                and not self.title_depth
                and (tag in ("h1", "h2", "h3", "h4") or "refentrytitle" in classes)):
            heading = True
            self.title_depth = 1
        elif self.title_depth:
            self.title_depth += 1
        self.stack.append((tag, opens, skips, heading))
        if skips:
            self.skip_depth += 1
        if tag == "pre":
            self.pre_depth += 1
        if tag in BLOCK_TAGS:
            self._text("\n\n" if tag in ("p", "pre", "div", "table", "dt", "h1", "h2", "h3", "h4") else "\n")
        elif tag in ("td", "th") and self.current and not self.skip_depth:
            parts = self.sections[self.current[-1]][2]
            if parts and not parts[-1].endswith("\n"):   # between cells, not before a row's first
                self._text(" | ")

    def handle_endtag(self, tag):
        if tag in VOID_TAGS:
            return
        # Pop to the matching element (the manual is XHTML, so this is exact there).
        while self.stack:
            t, opens, skips, heading = self.stack.pop()
            if skips:
                self.skip_depth -= 1
            if t == "pre":
                self.pre_depth -= 1
            if heading:
                self.title_depth = 0
                self.title_taken.add(self.current[-1])
            elif self.title_depth:
                self.title_depth -= 1
            if t in BLOCK_TAGS:
                self._text("\n\n" if t in ("p", "pre", "div", "table") else "\n")
            if opens:
                self.current.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self.skip_depth or not self.current:
            return
        if not self.pre_depth:
            data = re.sub(r"\s+", " ", data)
            parts = self.sections[self.current[-1]][2]
            if not parts or parts[-1].endswith("\n"):
                data = data.lstrip()
        if self.title_depth:
            self.sections[self.current[-1]][1].append(data)
        else:
            self._text(data)

    def _text(self, s):
        if self.current and not self.skip_depth:
            self.sections[self.current[-1]][2].append(s)


def _clean(text):
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def split_sections(html_text, page):
    """Sections of one page: a list of dicts {source, section_id, title, text}; text has the
    section's own text (its subsections are sections of their own), paragraphs apart by a blank
    line, code blocks as written."""
    parser = _SectionSplitter()
    parser.feed(html_text)
    parser.close()
    out = []
    for sid, title, parts in parser.sections:
        title = re.sub(r"\s+", " ", "".join(title)).strip()
        text = _clean("".join(parts))
        out.append({"source": f"{page}#{sid}", "section_id": sid, "title": title, "text": text})
    return out


def page_names(manual=MANUAL):
    return sorted(p.name for p in Path(manual).glob("*.html"))


def slice_pages(which="default", manual=MANUAL):
    """Page names of a slice: "all" (the manual), "default" (CORE_PREFIXES), or a comma list of
    page-name prefixes."""
    names = page_names(manual)
    if which == "all":
        return names
    prefixes = CORE_PREFIXES if which == "default" else tuple(p for p in which.split(",") if p)
    return [n for n in names if n.startswith(prefixes)]


def load_sections(pages=None, manual=MANUAL):
    """Every section (MIN_WORDS words or more) of the given pages (default: all), in page order."""
    manual = Path(manual)
    out = []
    for page in pages if pages is not None else page_names(manual):
        text = (manual / page).read_text(encoding="utf-8")
        for s in split_sections(text, page):
            if len(s["text"].split()) >= MIN_WORDS:
                out.append(s)
    return out


def section_map(pages=None, manual=MANUAL):
    """{source: section} for every section of the pages (also the short ones)."""
    manual = Path(manual)
    out = {}
    for page in pages if pages is not None else page_names(manual):
        for s in split_sections((manual / page).read_text(encoding="utf-8"), page):
            out[s["source"]] = s
    return out


def document(section):
    """What one section becomes for ruvllm_ingest_many: its title first, then its text."""
    return {"content": f"{section['title']}\n\n{section['text']}", "node_type": "Document",
            "source": section["source"], "metadata": {"section": section["title"]}}


def ingest(conn, sections, batch=25, progress=None, budget_s=None):
    """Ingest sections into the session's tenant with ruvllm_ingest_many(jsonb), `batch` sections a
    statement. Stops after budget_s seconds (between batches) when given. Returns
    {"sections": n ingested, "seconds": s}."""
    started = time.perf_counter()
    done = 0
    for i in range(0, len(sections), batch):
        if budget_s is not None and time.perf_counter() - started > budget_s:
            break
        docs = [document(s) for s in sections[i:i + batch]]
        conn.execute("SELECT ruvllm_ingest_many(%s::jsonb)", (json.dumps(docs),))
        done += len(docs)
        if progress:
            progress(done, time.perf_counter() - started)
    return {"sections": done, "seconds": time.perf_counter() - started}


def words(text):
    return len(text.split())


# --- the slice a bench loads, and a cache of it ---------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
TENANT = "pgdocs"
# Chunks the default slice holds: ingest embeds every chunk (all-MiniLM-L6-v2 over up to 256 word
# pieces, ~0.15 s a chunk on one core of this project's machine), so 3,000 chunks take 4-7 min.
DEFAULT_CHUNKS = 3000


def _chunker():
    import sys
    sys.path.insert(0, str(REPO / "python"))
    from ruvllm import textutil
    return textutil.chunk_text


def bench_slice(question_sources, chunk_budget=DEFAULT_CHUNKS, manual=MANUAL):
    """The pages a bench loads: every page a question's gold section is on, then the pages of
    CORE_PREFIXES in name order (the same chapters: other settings, commands, types, functions),
    then the rest of the manual, while the chunks ingest will make stay within chunk_budget.
    Returns (pages, sections, chunks)."""
    chunk = _chunker()
    first = sorted({s.split("#")[0] for s in question_sources if s})
    core = [p for p in slice_pages("default", manual) if p not in first]
    rest = [p for p in page_names(manual) if p not in first and p not in core]
    pages, sections, chunks = [], [], 0
    for i, page in enumerate(first + core + rest):
        secs = load_sections([page], manual)
        n = sum(len(chunk(document(s)["content"])) for s in secs)
        if i >= len(first) and chunks + n > chunk_budget:
            continue
        pages.append(page)
        sections.extend(secs)
        chunks += n
    return pages, sections, chunks


def ingest_parallel(connect, sections, jobs=2, batch=10, progress=None):
    """Ingest sections over `jobs` connections at once (connect() makes one, already in the
    tenant). Sections are dealt out round-robin by batch; each worker's SameTopic edges see what
    the others committed before. Returns seconds taken."""
    import threading
    batches = [sections[i:i + batch] for i in range(0, len(sections), batch)]
    done = [0]
    lock = threading.Lock()
    errors = []
    started = time.perf_counter()

    def work(mine):
        try:
            with connect() as conn:
                for b in mine:
                    conn.execute("SELECT ruvllm_ingest_many(%s::jsonb)",
                                 (json.dumps([document(s) for s in b]),))
                    with lock:
                        done[0] += len(b)
                        if progress:
                            progress(done[0], time.perf_counter() - started)
        except Exception as e:  # reported after the others finished
            errors.append(e)

    threads = [threading.Thread(target=work, args=(batches[j::jobs],)) for j in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def cache_key(sections):
    """Changes whenever what the memory would hold changes: the documents ingested, and
    ingestion's code and the SQL it runs."""
    import hashlib
    h = hashlib.sha256()
    for s in sections:
        h.update(json.dumps(document(s), sort_keys=True).encode())
    for f in ("sql/ruvllm.sql", "ruvllm.control", "python/ruvllm/memory.py",
              "python/ruvllm/textutil.py", "python/ruvllm/embedding.py", "python/ruvllm/graph.py",
              "python/ruvllm/unit_vectors.py"):
        p = REPO / f
        if p.exists():
            h.update(p.read_bytes())
    # The stored unit vectors are split as evidence.py's layout says (not the whole module: its
    # scoring changes what is asked, not what is stored).
    layout = re.search(r"^UNIT_LAYOUT = (\d+)", (REPO / "python/ruvllm/evidence.py").read_text(), re.M)
    h.update(f"unit layout {layout.group(1) if layout else None}".encode())
    return h.hexdigest()[:16]


def build_memory(server, dbname, question_sources, chunk_budget=DEFAULT_CHUNKS, jobs=2,
                 cache_dir=None, log=print):
    """Make database `dbname` on a bench Server with ruvllm and the slice in tenant TENANT.
    With cache_dir, a pg_dump of it is kept there (keyed by cache_key) and restored next time.
    Returns facts for the report: pages, sections, chunks (estimated), nodes, ingest_s, cached."""
    import subprocess
    from common import PG_BIN
    pages, sections, chunks = bench_slice(question_sources, chunk_budget)
    key = cache_key(sections)
    dump = Path(cache_dir) / f"pgdocs-{key}.dump" if cache_dir else None
    with server.connect("postgres") as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    conn_args = ["-h", str(server.dir), "-p", str(server.port), "-U", "postgres"]
    facts = {"pages": len(pages), "sections": len(sections), "chunks_estimated": chunks,
             "cached": False, "ingest_s": None}
    if dump is not None and dump.exists():
        t0 = time.perf_counter()
        subprocess.run([PG_BIN / "pg_restore", *conn_args, "-d", dbname, str(dump)], check=True,
                       capture_output=True)
        facts.update(cached=True, restore_s=time.perf_counter() - t0)
        log(f"pgdocs: restored the slice from {dump} in {facts['restore_s']:.0f} s")
    else:
        with server.connect(dbname) as conn:
            conn.execute("CREATE EXTENSION ruvllm CASCADE")
            conn.execute("SELECT ruvllm_create_tenant(%s)", (TENANT,))
        log(f"pgdocs: ingesting {len(sections)} sections of {len(pages)} pages (~{chunks} chunks)")
        last = [0.0]

        def progress(n, t):
            if t - last[0] > 30:
                last[0] = t
                log(f"pgdocs: {n}/{len(sections)} sections in {t:.0f} s")

        def connect():
            c = server.connect(dbname)
            c.execute("SELECT set_config('ruvllm.tenant', %s, false)", (TENANT,))
            return c
        facts["ingest_s"] = ingest_parallel(connect, sections, jobs=jobs, progress=progress)
        if dump is not None:
            dump.parent.mkdir(parents=True, exist_ok=True)
            tmp = dump.with_suffix(".tmp")
            subprocess.run([PG_BIN / "pg_dump", *conn_args, "-Fc", "-f", str(tmp), dbname],
                           check=True, capture_output=True)
            tmp.replace(dump)
    with server.connect(dbname) as conn:
        facts["nodes"] = conn.execute("SELECT count(*) FROM ruvllm.nodes WHERE tenant = %s",
                                      (TENANT,)).fetchone()[0]
    facts["page_list"] = pages
    if facts["ingest_s"]:
        facts["chunks_per_s"] = facts["nodes"] / facts["ingest_s"]
    return facts


def load_questions(path=None):
    path = Path(path or REPO / "bench" / "answers" / "questions.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
