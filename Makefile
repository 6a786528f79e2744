# Two commands on a fresh machine: `make demo` and `make test`. Each creates (or reuses) .venv by itself.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

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

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
