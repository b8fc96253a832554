"""What the benches share: the command line of their run.py; for those that need a database, a
throwaway PostgreSQL 17 with ruvllm preloaded and the settings `make up` runs with; the machine's
facts for a report's first line.

Each bench's run.py puts bench/ on sys.path and imports this module (and results.py) from there.
"""
import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("RUVLLM_PG_BIN", "/usr/lib/postgresql/17/bin"))
# One BLAS thread per backend, as `make up` runs it (env/server.sh): backends share the cores.
CHILD_ENV = {"OPENBLAS_NUM_THREADS": "1"}

# Lines of env/server.sh's ruvllm.conf that are about where the server listens and logs, not
# about how fast it is; a bench sets its own.
# ruvllm.databases is a shell expression there (RUVLLM_LOOPS), and which databases run the loops is
# each bench's choice, not tuning.
_NOT_TUNING = {"listen_addresses", "port", "unix_socket_directories", "shared_preload_libraries",
               "logging_collector", "log_directory", "ruvllm.databases"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


NOT_RECORDED = 3


def cli(name, doc, record, scales, extra=None):
    """The command line of bench/<name>/run.py: --out FILE (also write the report to FILE),
    --record REPORT RESULTS_MD (call record(REPORT, RESULTS_MD), as bench/run.sh does, and exit)
    and what extra(parser) adds. Returns (args, scale): scale is RUVLLM_BENCH_SCALE ("default" when
    unset), one of `scales`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--record", nargs=2, metavar=("REPORT", "RESULTS_MD"),
                    help="merge a report written by --out into RESULTS_MD and exit")
    if extra:
        extra(ap)
    args = ap.parse_args()
    if args.record:
        # bench/run.sh tells a recorded report from a subset run's by the exit status.
        raise SystemExit(NOT_RECORDED if record(*args.record) is False else 0)
    scale = os.environ.get("RUVLLM_BENCH_SCALE") or "default"
    if scale not in scales:
        raise SystemExit(f"bench/{name}: RUVLLM_BENCH_SCALE is one of {', '.join(scales)}, not {scale!r}")
    return args, scale


def print_report(text, out=None):
    """Print a bench's report, and write it to the file `out` too (--out) when given."""
    print(text)
    if out:
        Path(out).write_text(text)


def make_up_settings():
    """The tuning `make up` applies, read from env/server.sh so a bench measures exactly that."""
    text = (REPO / "env" / "server.sh").read_text()
    block = re.search(r'ruvllm\.conf" <<EOF\n(.*?)\nEOF', text, re.S)
    if not block:
        raise SystemExit("bench: cannot find the ruvllm.conf block in env/server.sh")
    settings = {}
    for line in block.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in _NOT_TUNING:
            settings[key] = value
    return settings


def machine():
    """(CPU model, cores, RAM in GiB, "Linux <release>") of this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return cpu, os.cpu_count(), mem_gib, f"{platform.system()} {platform.release()}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A throwaway PostgreSQL cluster in `workdir` (initdb'd here, trust auth, user postgres) with
    shared_preload_libraries = 'age,ruvllm', as the product runs. Clients reach it over a Unix
    socket in `workdir`, or over 127.0.0.1 with tcp=True. The caller stops it and removes workdir.

    start(settings) writes the settings (a dict of postgresql.conf values, quoted as there) to
    data/bench.conf; restart(settings) changes them ({} = PostgreSQL's defaults).
    """

    def __init__(self, workdir, tcp=False, name="bench"):
        self.dir = Path(workdir)
        self.data = self.dir / "data"
        self.port = free_port()
        self.tcp = tcp
        self.name = name          # for error messages
        self.settings = {}
        subprocess.run([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\ninclude = 'bench.conf'\n")

    def start(self, settings=None):
        if settings is not None:
            self.settings = dict(settings)
        conf = {"listen_addresses": "'127.0.0.1'" if self.tcp else "''", "port": str(self.port),
                "unix_socket_directories": f"'{self.dir}'",
                "shared_preload_libraries": "'age,ruvllm'", **self.settings}
        (self.data / "bench.conf").write_text("".join(f"{k} = {v}\n" for k, v in conf.items()))
        r = subprocess.run([PG_BIN / "pg_ctl", "-D", self.data, "-w", "-t", "120",
                            "-l", self.dir / "server.log", "start"],
                           env=dict(os.environ, **CHILD_ENV), capture_output=True)
        if r.returncode:
            print((self.dir / "server.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"{self.name}: the server did not start")

    def stop(self, check=True):
        subprocess.run([PG_BIN / "pg_ctl", "-D", self.data, "-w", "-t", "120", "-m", "fast", "stop"],
                       check=check, capture_output=True)

    def restart(self, settings=None):
        self.stop()
        self.start(settings)

    def connect(self, dbname="bench", options=""):
        import psycopg
        host = "127.0.0.1" if self.tcp else str(self.dir)
        return psycopg.connect(host=host, port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, options=options)
