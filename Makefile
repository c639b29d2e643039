# Two commands on a fresh machine: `make demo` (the pipeline on the embedded sample) and `make test`.
# Both create/refresh .venv first. PYTHON may point at another Python 3.11 interpreter.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.faceops-installed
# The whole environment, exact versions with sha256 hashes; `make lock` rewrites both files from pyproject.toml.
LOCK        := requirements.lock
LOCK_NODEPS := requirements-nodeps.lock
EXTRAS      := cpu plots dev
# MTCNN weights ship inside facenet-pytorch's wheel; its metadata pins torch<2.3, so it goes in without deps.
FACENET     := facenet-pytorch==2.6.0
LOCK_TOOLS  := $(VENV)/.pip-tools

.PHONY: demo test bench clean-demo lock browser

$(STAMP): pyproject.toml $(LOCK) $(LOCK_NODEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(LOCK)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK_NODEPS)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Upgrading dependencies: re-resolve pyproject.toml to the newest allowed versions (README.md, "Upgrading dependencies").
lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/pip install -q pip-tools==7.6.2; }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile -q --upgrade --generate-hashes --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(addprefix --extra ,$(EXTRAS)) -o $(LOCK) pyproject.toml
	rm -rf $(LOCK_TOOLS)/dl && $(LOCK_TOOLS)/bin/pip download -q --no-deps -d $(LOCK_TOOLS)/dl $(FACENET)
	{ echo "# Written by make lock: installed with --no-deps (its metadata pins torch<2.3)."; echo "$(FACENET) \\"; \
	  $(LOCK_TOOLS)/bin/pip hash $(LOCK_TOOLS)/dl/* | sed -n 's/^--hash=/    --hash=/p'; } > $(LOCK_NODEPS)

demo: $(STAMP)
	$(BIN)/faceops run
	$(BIN)/faceops report

# Two pytest processes (pytest-xdist); --dist loadfile keeps each test file in one process, so a module's
# fixtures (the tiny pipeline build) are made once.
test: $(STAMP) browser
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q --durations=15 -n 2 --dist loadfile

# The report page test drives Debian's chromium + chromedriver (tests/headless.py); installed where apt-get can,
# otherwise that one test is skipped with a message naming the packages.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive sh -c \
	    'apt-get install -y -qq chromium chromium-driver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }' \
	  ; } >/dev/null 2>&1 || echo "chromium not installed (no apt-get?): the report page browser test will be skipped"

# Every benchmark; outputs and figures in bench/results/ (SUMMARY.md); exits non-zero when any goal is missed.
bench: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python bench/_run_all.py

clean-demo:
	rm -rf data/raw/sample data/interim data/aligned data/shards data/reports metrics .faceops
