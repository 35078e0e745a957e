# robustnic: `make demo` installs into .venv and runs the main job; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.robustnic-installed

.PHONY: install demo test eval results train-data zoo clean

# constraints.txt pins the tested versions (pyproject.toml only states ranges).
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m robustnic.cli.main demo --out demo-out

eval: install
	$(PY) -m robustnic.cli.main eval --images bundled --out demo-out/eval \
		$(foreach m,$(shell $(PY) -c "from robustnic.codecs import read_manifest; print(' '.join(read_manifest()))"),--model $(m))

test: install
	$(PY) -m pytest -p no:cacheprovider

# Rerun every RESULTS table at its recorded settings (CPU hours; resumable: tables already made by
# this code are skipped). `$(PY) benchmarks/results.py --status` lists what is stale.
results: install
	$(PY) benchmarks/results.py $(RESULTS_ARGS)

# Training photos (Debian's mate-backgrounds nature photos); needs root.
train-data:
	apt-get update -qq && apt-get install -y -qq mate-backgrounds

# Rebuild the shipped model zoo (CPU hours; resumable): see src/robustnic/weights/README.md
zoo: install train-data
	$(PY) -m robustnic.training.zoo

clean:
	rm -rf demo-out .pytest_cache
