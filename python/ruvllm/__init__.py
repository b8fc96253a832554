"""ruvllm: the Python side of the ruvllm PostgreSQL extension.

The SQL functions are thin glue over this package. It never imports plpy: the glue passes plpy
in, so nearly everything here can be tested without a database.
"""
import os
import re


def _version_from_control():
    # In a source checkout the version's one source is ruvllm.control; `make install` writes
    # _version.py from that same line.
    control = os.path.join(os.path.dirname(__file__), "..", "..", "ruvllm.control")
    with open(control, encoding="utf-8") as f:
        match = re.search(r"^default_version\s*=\s*'([^']+)'", f.read(), re.M)
    return match.group(1)


try:
    from ._version import __version__
except ImportError:
    __version__ = _version_from_control()
