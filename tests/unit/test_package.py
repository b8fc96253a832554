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


class RecordingPlpy:
    """Stands in for plpy's error() only: records what the glue would report."""

    def error(self, message, detail=None, hint=None, sqlstate=None):
        self.reported = dict(message=message, detail=detail, hint=hint, sqlstate=sqlstate)
        raise FakeError(message)


def test_glue_reports_sqlstate_and_hint():
    plpy = RecordingPlpy()

    def fail():
        raise errors.RuvllmError("22023", "k must be between 1 and 1000", hint="use 10")

    with pytest.raises(FakeError):
        sqlglue.call(plpy, fail)
    assert plpy.reported == dict(message="k must be between 1 and 1000", detail=None,
                                 hint="use 10", sqlstate="22023")
    assert sqlglue.call(plpy, lambda x: x + 1, 41) == 42


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
