# Two commands do all set-up on a fresh machine:
#   make demo   compile an example CNN and a transformer block for every target
#   make test   the test suite (CI runs exactly this through .ci/run)
PYTHON ?= python3
PIP = $(PYTHON) -m pip install -q --disable-pip-version-check

.PHONY: setup demo test test-all bench lint
setup: .setup-done

# torch first, pinned to the CPU wheel on disk: an unpinned torch (asked for by any
# later package) would pull a multi-GB CUDA build.
.setup-done: pyproject.toml Makefile .ci/setup-system.sh
	$(PIP) torch==2.13.0
	$(PIP) apache-tvm==0.27.0.post1 numpy networkx pytest pytest-xdist hypothesis matplotlib "transformers>=5,<6" onnx onnxruntime onnxscript tornado
	bash .ci/setup-system.sh
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(PYTHON) examples/demo.py

test: setup
	$(PYTHON) -m pytest -q -n 2 --dist loadfile

test-all: setup
	$(PYTHON) -m pytest -q -n 2 --dist loadfile -m ""

bench: setup
	$(PYTHON) benchmarks/run_all.py

lint:
	ruff check .
