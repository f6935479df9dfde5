# The two commands a user needs (see README.md):
#   make demo   set up .venv, build the offline dataset, train, evaluate, write the report
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test weights bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# tinysoundfont declares pyaudio (live playback only, needs PortAudio headers); we only render offline.
	$(PY) -m pip install -q --no-deps tinysoundfont==0.3.7
	touch $(STAMP)

weights: $(STAMP)
	$(PY) -m train.weights fetch

test: $(STAMP) weights
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: $(STAMP) weights
	$(PY) -m train demo
