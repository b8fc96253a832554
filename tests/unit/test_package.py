"""Pure tests of the package plumbing: version source, error mapping, generation input checks."""
import re
from pathlib import Path

import pytest

import ruvllm
from ruvllm import errors, generation, sqlglue

ROOT = Path(__file__).resolve().parents[2]


def test_version_comes_from_control_file():
    control = (ROOT / "ruvllm.control").read_text()
    assert re.search(r"^default_version = '(.+)'", control, re.M).group(1) == ruvllm.__version__


class FakeError(Exception):
    pass


class StandInPlpy:
    """Stands in for plpy's Error class only: the glue raises a subclass of it."""
    Error = FakeError


def test_glue_reports_sqlstate_and_hint():
    plpy = StandInPlpy()

    def fail():
        raise errors.RuvllmError("22023", "k must be between 1 and 1000", hint="use 10")

    with pytest.raises(FakeError) as e:
        sqlglue.call(plpy, fail)
    # PL/Python writes 'ruvllm: k must be ...', with the SQLSTATE and hint, and no empty detail.
    assert type(e.value).__name__ == "ruvllm" and type(e.value).__module__ == "builtins"
    assert (str(e.value), e.value.sqlstate, e.value.hint) == ("k must be between 1 and 1000", "22023", "use 10")
    assert not hasattr(e.value, "detail")
    with pytest.raises(FakeError) as e:
        sqlglue.call(plpy, lambda: int(float("1e400")))
    assert e.value.sqlstate == "22003"
    assert sqlglue.call(plpy, lambda x: x + 1, 41) == 42


def test_glue_sends_the_packages_warnings_when_the_call_returns(monkeypatch):
    sent = []
    plpy = StandInPlpy()
    plpy.warning = lambda message, **kw: sent.append((message, kw))
    monkeypatch.setattr(errors, "pending_warnings", [])

    def warns():
        errors.warn_client("slower path", hint="install it")
        return 1
    assert sqlglue.call(plpy, warns) == 1
    assert sent == [("slower path", {"hint": "install it"})] and errors.pending_warnings == []


@pytest.mark.parametrize("prompt", [None, "", "   \n"])
def test_generate_rejects_empty_prompt(prompt):
    with pytest.raises(errors.RuvllmError) as e:
        generation.generate_text(prompt)
    assert e.value.sqlstate == "22023"


def test_generate_rejects_unknown_model_with_hint():
    with pytest.raises(errors.RuvllmError) as e:
        generation.generate_text("hello", model_name="gpt-17")
    assert e.value.sqlstate == errors.UNDEFINED_OBJECT
    assert "smollm2-135m-instruct" in e.value.hint


def test_missing_model_file_is_reported(tmp_path):
    backend = generation.LlamaCppBackend()
    spec = generation.bundled_models(str(tmp_path))["smollm2-135m-instruct"]
    with pytest.raises(errors.RuvllmError) as e:
        backend.generate(spec, "hello")
    assert e.value.sqlstate == "58P01"
    assert str(tmp_path) in e.value.message
