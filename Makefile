# Two commands on a fresh machine: `make demo` (the pipeline on the embedded sample) and `make test`.
# Both create/refresh .venv first. PYTHON may point at another Python 3.11 interpreter.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.faceops-installed

.PHONY: demo test bench clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[cpu,plots,dev]"
	# MTCNN weights ship inside facenet-pytorch's wheel; its metadata pins torch<2.3, so no deps.
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/faceops run
	$(BIN)/faceops report

test: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || echo "FAILED GOAL: $$b"; done

clean-demo:
	rm -rf data/raw/sample data/interim data/aligned data/shards data/reports metrics .faceops
