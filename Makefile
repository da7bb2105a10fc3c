# segaudit: `make demo` and `make test` are all a fresh clone needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
DEMO_RUN ?= demo-run
DEMO_FOLDER_RUN ?= demo-run-folder
DEMO_VOLUMES ?= demo-volumes
DEMO_VOLUME_RUN ?= demo-run-volumes

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml setup.py segaudit/engine/_kernels.c segaudit/engine/_regions.c | $(PY)
	$(PY) -m pip install --quiet -e '.[medical]'
	touch $@

$(DEV): pyproject.toml setup.py segaudit/engine/_kernels.c segaudit/engine/_regions.c | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME)

demo: $(RUNTIME)
	$(VENV)/bin/segaudit scan sample_data -o $(DEMO_RUN)
	$(VENV)/bin/segaudit swaps $(DEMO_RUN) --top 8
	$(VENV)/bin/segaudit render $(DEMO_RUN) --top 4 --zoom 2
	$(VENV)/bin/segaudit eval $(DEMO_RUN) --truth sample_data
	$(VENV)/bin/segaudit scan sample_data/folder -o $(DEMO_FOLDER_RUN)
	$(VENV)/bin/segaudit eval $(DEMO_FOLDER_RUN) --truth sample_data/folder
	$(VENV)/bin/segaudit synth $(DEMO_VOLUMES) --volumes --images 3 --classes 5 \
		--shape 24x64x64,20x56x64 --seed 0 --force --quiet
	$(VENV)/bin/segaudit scan $(DEMO_VOLUMES) --layout nnunet \
		--pred-probs $(DEMO_VOLUMES)/predictions -o $(DEMO_VOLUME_RUN)
	$(VENV)/bin/segaudit render $(DEMO_VOLUME_RUN)

test: $(DEV)
	$(PY) -m pytest -q

lint: $(DEV)
	$(VENV)/bin/ruff check segaudit tests bench setup.py

bench: $(DEV)
	$(PY) bench/run.py --repeat 3

clean:
	rm -rf $(DEMO_RUN) $(DEMO_FOLDER_RUN) $(DEMO_VOLUMES) $(DEMO_VOLUME_RUN) .pytest_cache
