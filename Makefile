# rtcscope-server: `make run` sets up and starts everything, `make test` runs the tests
# (`make test-fast` the inner loop's share of them).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := influxdb chromium nginx wrk curl fonts-dejavu-core binutils systemd prometheus-alertmanager janus janus-demos
PORT ?= 8080
INFLUXDB_PORT ?= 8086
JS_TEST := tests/js
# The inner loop leaves out the tests marked (pytest.ini) as driving Chromium or nginx,
# building the binary, or slow by nature (server processes, real timeouts, large loads).
FAST_TESTS := not browser and not nginx and not binary and not slow

.PHONY: install run test test-fast lint bench binary demo-fleet clean

install: $(VENV)/.installed
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@$(MAKE) -s --no-print-directory $(JS_TEST)/node_modules/.installed

# npm packages the browser tests bundle (@jitsi/rtcstats), pinned by tests/js/package-lock.json.
$(JS_TEST)/node_modules/.installed: $(JS_TEST)/package.json $(JS_TEST)/package-lock.json
	cd $(JS_TEST) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

run: install
	INFLUXDB_PORT=$(INFLUXDB_PORT) scripts/influxd-local.sh
	$(PY) server.py --config=conf/rtcscope.conf --port=$(PORT) --influxdb-url=http://127.0.0.1:$(INFLUXDB_PORT)

test: install lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install lint
	$(PY) -m pytest -q -m "$(FAST_TESTS)" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

# One executable, dist/rtcscope-server, carrying templates/ and static/ (cached under build/binary/).
binary: install
	PY=$(PY) scripts/build-binary.sh

# Quick benchmarks (report in bench/results/); BENCH_ARGS=--full rewrites docs/PERFORMANCE.md.
bench: install
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) -m bench $(BENCH_ARGS)

# A simulated fleet (300 live calls, one in seventeen bad) sent to the server `make run` started; DEMO_ARGS="--duration 600 --calls 1000".
demo-fleet: install
	$(PY) scripts/demo_fleet.py --server http://127.0.0.1:$(PORT) $(DEMO_ARGS)

clean:
	rm -rf build dist .pytest_cache
