# The two commands a newcomer runs: `make run` and `make test`.
# Both set themselves up: a virtualenv with the pinned packages, and (for the
# tests) the Debian packages of the services the harness starts.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test check lint system-packages bench clean rig

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

## The console's browser assets (htmx, Leaflet) from the pinned npm lock, served locally.
CONSOLE_ASSETS := cloud/console/node_modules/.package-lock.json
$(CONSOLE_ASSETS): cloud/console/package-lock.json
	@cloud/console/install-assets

setup: $(STAMP) $(CONSOLE_ASSETS)

system-packages:
	@testing/ensure-system-packages

## Run the whole system on embedded defaults: in-process broker, SQLite, local telemetry store,
## a demo city with simulated stations and vehicles. MQTT_URL / DATABASE_URL / INFLUX_URL override.
run: setup
	$(PY) -m kickstand.simulators.demo

## The whole test suite, against real Mosquitto, PostgreSQL and InfluxDB started by the harness,
## after the lint and type checks (ruff, mypy).
## Two workers (PYTEST_WORKERS), a test file at a time on each (--dist loadfile: a file's
## module-scoped city or broker stays on one worker). Most of the suite waits on real
## services and timers, so two workers halve the time on 2 cores. PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2
test: setup system-packages check
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## Lint and types: the same script developers and CI use.
check: setup
	$(VENV)/bin/ruff check .
	@# mypy checks the real import names (kickstand.rigs lives in hardware-tests/, whose dash
	@# is not a module name): a tree of symlinks maps each folder to its kickstand.* name.
	@mkdir -p .build/typecheck/kickstand
	@for p in protocol:protocol edge:edge cloud:cloud simulators:simulators rigs:hardware-tests testing:testing; do \
	  ln -sfn ../../../$${p#*:} .build/typecheck/kickstand/$${p%%:*}; done
	MYPYPATH=.build/typecheck $(VENV)/bin/mypy -p kickstand.protocol -p kickstand.edge \
	  -p kickstand.cloud -p kickstand.simulators -p kickstand.rigs -p kickstand.testing

## A technician's test rig: the station suite against the simulators, report in reports/.
## RIG_ARGS="vehicle --simulated", or "station --rig my-bench.toml" for real hardware.
RIG_ARGS ?= station --simulated
rig: setup
	$(PY) -m kickstand.rigs $(RIG_ARGS)

bench: setup system-packages
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache
