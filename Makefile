# On a fresh machine: `make demo`, `make test` (the quick local run) and `make ci` (what CI runs: lint, format
# check and the whole suite, where a skipped test fails). Each creates (or reuses) .venv by itself.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test ci typecheck bench install clean

$(STAMP): pyproject.toml
	# a .venv left half-made (no pip: the venv module was missing) is made again
	$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	# Pin torch first: an unpinned torch pulls several GB of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	# setuptools prints a notice on every editable install with a package-dir mapping (ours: cli/, viewers/)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[torch,viewer,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/onnx-geom demo

# The quick run: every test but those marked slow (the demo, the Qt window, the slowest fidelity checks).
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# What CI runs (.ci/run): lint, formatting, then the whole suite, slow tests included; ONNX_GEOM_NO_SKIPS=1 turns
# every skip into a failure (a missing dependency cannot pass as "skipped"; tests marked gpu may still skip).
ci: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MAKE) typecheck
	ONNX_GEOM_NO_SKIPS=1 $(PY) -m pytest -q

# mypy on the package as it installs (onnx_geom with its cli and viewers, which live in cli/ and viewers/ here)
typecheck: $(STAMP)
	rm -rf build  # setuptools reuses build/lib: a deleted module would live on there
	$(PY) -m pip install -q --no-deps --no-compile --target build/typecheck .
	cd build/typecheck && $(abspath $(PY)) -m mypy --config-file $(CURDIR)/pyproject.toml -p onnx_geom

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
