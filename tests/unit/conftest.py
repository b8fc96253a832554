"""What the unit tests of the embedders share: the package on sys.path, sentence-transformers'
reference vectors, and the installed all-MiniLM-L6-v2 (tests that need it skip without it)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "python") not in sys.path:
    sys.path.insert(0, str(ROOT / "python"))

from ruvllm import embedding as E  # noqa: E402
from ruvllm.errors import RuvllmError  # noqa: E402

MINILM_REFERENCE = ROOT / "tests" / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def reference():
    """tests/fixtures/minilm_reference.json (tests/fixtures/make_minilm_reference.py)."""
    return json.loads(MINILM_REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def model_dir():
    """The installed all-MiniLM-L6-v2 with a tokenizer to read it."""
    try:
        path = E.find_model_dir()
    except RuvllmError as e:
        pytest.skip(f"all-MiniLM-L6-v2 not installed ({e.message}; {e.hint})")
    pytest.importorskip("tokenizers", reason="the tokenizers package is not installed")
    return path


@pytest.fixture(scope="session")
def numpy_embedder(model_dir):
    """ruvllm's numpy forward over the installed model (one for the whole run: it is read-only)."""
    return E.Embedder(model_dir)
