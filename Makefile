# ruvllm: PGXS build and install. The version has one source: default_version in ruvllm.control.
EXTENSION = ruvllm
EXTVERSION := $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(dir $(lastword $(MAKEFILE_LIST)))ruvllm.control)

MODULE_big = ruvllm
OBJS = $(patsubst %.c,%.o,$(wildcard extension/*.c))
# One source for the SQL (as pgvector does): sql/ruvllm.sql is the current full install script, the
# one place an object is defined; make copies it to the versioned install script. Each release adds
# only its upgrade script, sql/ruvllm--OLD--NEW.sql. Released full scripts are not kept in the tree:
# the upgrade test takes them from git history (env/releases.txt).
DATA = $(wildcard sql/ruvllm--*--*.sql)
DATA_built = sql/ruvllm--$(EXTVERSION).sql
PG_CPPFLAGS = -DRUVLLM_VERSION='"$(EXTVERSION)"'
# Our C files build without a warning (as pg_cron's do): PGXS's warning flags, made errors.
PG_CFLAGS = -Wall -Werror

# pg_regress suite for packagers: `make installcheck` against a running PostgreSQL 17 that has
# ruvllm and its dependencies installed (PGHOST, PGPORT, PGUSER as for psql; a superuser, as
# plpython3u needs). Each test is a pair test/sql/NAME.sql and test/expected/NAME.out, run in
# name order in a fresh database contrib_regression; a test is added by adding its pair.
# EXTRA_REGRESS_OPTS=--outputdir=DIR puts results/ and regression.diffs elsewhere than here.
REGRESS = $(sort $(basename $(notdir $(wildcard test/sql/*.sql))))
REGRESS_OPTS = --inputdir=test --load-extension=plpython3u --load-extension=vector \
	--load-extension=age --load-extension=ruvllm

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

# The Python package goes into a per-version directory beside the library; PL/Python puts it
# first on sys.path once per session, so a user's site-packages cannot shadow it.
PYTHON_DIR = $(pkglibdir)/ruvllm-python/$(EXTVERSION)

ifneq ($(PGXS),)
include $(PGXS)

# The library has the version compiled in.
$(OBJS): ruvllm.control

sql/ruvllm--$(EXTVERSION).sql: sql/ruvllm.sql ruvllm.control
	cp $< $@

install: install-python install-embedding
install-python:
	$(MKDIR_P) '$(DESTDIR)$(PYTHON_DIR)/ruvllm'
	$(INSTALL_DATA) python/ruvllm/*.py '$(DESTDIR)$(PYTHON_DIR)/ruvllm/'
	echo "__version__ = '$(EXTVERSION)'" > '$(DESTDIR)$(PYTHON_DIR)/ruvllm/_version.py'

# ruvllm.embedder = llama reads all-MiniLM-L6-v2 as a GGUF file, written here from the installed
# model's safetensors (~1 s; nothing is downloaded). Where the model is not installed yet it is
# skipped, and a backend writes the file on first use (ruvllm/embedding_llama.py, gguf_dirs).
PYTHON ?= python3
EMBEDDING_DIR = $(pkglibdir)/ruvllm-python/embedding
install-embedding: install-python
	$(MKDIR_P) '$(DESTDIR)$(EMBEDDING_DIR)'
	cd '$(DESTDIR)$(PYTHON_DIR)' && $(PYTHON) -m ruvllm.embedding_llama '$(DESTDIR)$(EMBEDDING_DIR)'

uninstall: uninstall-python
uninstall-python:
	rm -rf '$(DESTDIR)$(PYTHON_DIR)' '$(DESTDIR)$(EMBEDDING_DIR)'

.PHONY: install-python install-embedding uninstall-python
else
all install installcheck:
	@echo "pg_config not found (PG_CONFIG=$(PG_CONFIG)). To install into your PostgreSQL, set PG_CONFIG;" >&2
	@echo "for the self-contained environment use: make demo, make test (see README.md)." >&2
	@exit 1
endif

# Development environment: make env, test, demo, up, down, psql, conninfo.
include env/dev.mk
