# gcgate developer entry points. Everything runs from a project-local virtualenv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv run test test-fast soak bench lint proto proto-check clean install-systemd install-venv install-units

venv: $(STAMP)

## Both distributions, editable: the client (client/, with its CLI extra) and the daemon (.).
## In one pip command, so the daemon's gcgate requirement is met by ./client, not an index.
$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e './client[cli]' -e '.[test]'
	touch $(STAMP)

## Start a daemon on the embedded local endpoint, run the user-guide examples, stop it.
run: venv
	$(PY) examples/demo.py

## The whole test suite (CI runs exactly this), its files spread over TEST_WORKERS
## processes (pytest-xdist; a file's tests stay together, sharing its fixtures).
TEST_WORKERS ?= 2
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## The fast layer alone: in-process tests of the store, core, servicer and backends
## units with fakes, no daemon process or broker (under a minute; tests marked `fast`).
test-fast: venv
	$(PY) -m pytest -q -m 'fast and not soak'

## Long reliability runs: more kill points, seeds, fuzz examples and load time (docs/reliability.md).
soak: venv
	$(PY) -m pytest -q -m soak

## Issue 6's figures against baselines run beside them; rewrites docs/benchmarks.md.
## CI smoke (prints only): make bench BENCH_ARGS=--quick. See bench/notes.md.
BENCH_ARGS ?=
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check client daemon tests examples bench
	$(VENV)/bin/ruff format --check client daemon tests examples bench

## Regenerate the gRPC stubs from proto/ (committed; tests fail when they are stale).
proto: venv
	$(PY) -m grpc_tools.protoc -Iproto --python_out=client --pyi_out=client \
		--grpc_python_out=client proto/gcgate/v1/gateway.proto

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info daemon/*.egg-info client/build client/*.egg-info

## System service (as root): gcgate in a venv at $(PREFIX), the units, the gcgate user.
## Then see docs/service.md: credentials, `systemctl enable --now gcgated`, the group.
PREFIX      ?= /opt/gcgate
DESTDIR     ?=
UNITDIR     ?= /etc/systemd/system
USERUNITDIR ?= /etc/systemd/user
SYSUSERSDIR ?= /etc/sysusers.d
CONFDIR     ?= /etc/gcgate
BINDIR      ?= /usr/local/bin

install-systemd: install-venv install-units
	systemd-sysusers $(SYSUSERSDIR)/gcgate.conf
	ln -sf $(PREFIX)/bin/gcgate $(BINDIR)/gcgate
	ln -sf $(PREFIX)/bin/gcgated $(BINDIR)/gcgated
	systemctl daemon-reload
	@echo "installed; next: credentials and 'systemctl enable --now gcgated' (docs/service.md)"

## The daemon and the client with its CLI in their own venv (an upgrade re-runs this, then
## restarts the unit). One pip command: the daemon's gcgate requirement is met by ./client.
## The interpreter must not live under /home or /root: the unit hides them (ProtectHome=yes).
install-venv:
	@base=$$($(PYTHON) -c 'import sys; print(sys.base_prefix)'); case "$$base/" in \
		/home/*|/root/*) echo "install-venv: $(PYTHON) is in $$base, hidden from the service" \
			"by ProtectHome=yes; use e.g. PYTHON=/usr/bin/python3"; exit 1;; esac
	test -x $(PREFIX)/bin/python || $(PYTHON) -m venv $(PREFIX)
	@# setuptools puts all of build/lib into the wheel: files deleted since the last
	@# build, and in a checkout built before the split, a stale gcgate/ in gcgated's wheel.
	rm -rf build client/build
	$(PREFIX)/bin/python -m pip install --quiet --upgrade './client[cli]' .

## Units, sysusers snippet, /etc/gcgate (never overwriting gcgate.env); DESTDIR-aware.
install-units:
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	sed -e 's|^ExecStart=.*gcgated$$|ExecStart=$(PREFIX)/bin/gcgated|' \
		-e 's|^ExecReload=.*gcgated --check-config$$|ExecReload=$(PREFIX)/bin/gcgated --check-config|' \
		systemd/gcgated.service \
		> $(DESTDIR)$(UNITDIR)/gcgated.service
	sed -e 's|^ExecStart=.*gcgated$$|ExecStart=$(PREFIX)/bin/gcgated|' \
		-e 's|^ExecReload=.*gcgated --check-config$$|ExecReload=$(PREFIX)/bin/gcgated --check-config|' \
		systemd/gcgated-user.service \
		> $(DESTDIR)$(USERUNITDIR)/gcgated.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/gcgated.service $(DESTDIR)$(USERUNITDIR)/gcgated.service
	install -m 0644 systemd/gcgate.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/gcgate.conf
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	install -d -m 0700 $(DESTDIR)$(CONFDIR)/credentials
	test -e $(DESTDIR)$(CONFDIR)/gcgate.env || \
		install -m 0644 systemd/gcgate.env $(DESTDIR)$(CONFDIR)/gcgate.env
