"""Recording a benchmark's report as its own section of bench/RESULTS.md (shared by the benches)."""
import os
from pathlib import Path

HEADER = ("# Benchmark results\n\nEach section is written by its benchmark's own run "
          "(see the command in it); numbers are not edited by hand.\n\n")


# A report that carries this line (a run over a subset) is printed but never recorded.
SUBSET_MARK = "<!-- subset run: not recorded -->"


def record_section(title, report_path, results_path):
    """Replace (or add) the section starting with the line `title`; other sections are kept.
    False, and nothing written, for a subset run's report (SUBSET_MARK).

    The file is read right before writing and replaced atomically, so sections that other runs
    wrote meanwhile survive.
    """
    section = Path(report_path).read_text()
    if SUBSET_MARK in section:
        return False
    results = Path(results_path)
    text = results.read_text() if results.exists() else HEADER
    start = text.find(title + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = text.find("\n## ", start + len(title))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + section + ("\n" if nxt >= 0 else "") + text[end:]
    tmp = results.with_name(results.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, results)
    return True
