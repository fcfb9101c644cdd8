# kk-voicebot: every set-up step lives here so that a fresh Debian 12 machine needs only
# `make run` or `make test` (as root). All targets are idempotent.

SHELL := /bin/bash
PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
PBX := asterisk/pbx
DEB_PACKAGES := python3-venv python3-dev gcc debootstrap espeak-ng sox baresip-core zstd
# chromium: the headless browser tests/integration/test_widget_browser.py drives (Playwright, no download)
DEB_PACKAGES += chromium
# postgresql: the store's second backend; tests start throw-away clusters with its initdb/pg_ctl (tests/pg.py)
DEB_PACKAGES += postgresql
# kamailio: the SIP proxy in front of two Asterisk nodes (asterisk/cluster, tests/integration/test_kamailio_cluster.py)
DEB_PACKAGES += kamailio
# openssl: tests/integration/test_trunk.py makes its TLS certificates at test time
DEB_PACKAGES += openssl
# wdanish: the Danish word list whisper-base-da's vocabulary is cut to (voicebot/models/whisper_trim.py)
DEB_PACKAGES += wdanish
STAMP := $(VENV)/.installed
SECRETS ?= asterisk/secrets.env

.PHONY: setup deps venv asterisk models run stop test secrets clean help install uninstall

help:
	@echo "make run    - install what is missing, start Asterisk + the bot + web chat (Ctrl-C stops)"
	@echo "make test   - install what is missing, run every test (real Asterisk included)"
	@echo "make setup  - install only (venv, Debian packages, Asterisk chroot, models)"
	@echo "make stop   - stop a system started in the background"
	@echo "make secrets - print the SIP accounts' passwords (from asterisk/secrets.env)"
	@echo "make install   - install and enable the systemd units for Asterisk and the bot (not started)"
	@echo "make uninstall - stop, disable and remove them (the user and the data stay)"

setup: deps venv asterisk models

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	if [ -d /run/systemd/system ] && systemctl is-enabled --quiet kamailio 2>/dev/null; then \
	  echo "disabling Debian's kamailio.service: its default config takes port 5060, ours is asterisk/cluster's"; \
	  systemctl disable --now kamailio; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

asterisk: deps
	@$(PBX) install

models: venv
	@$(VENV)/bin/voicebot models install --defaults

run: setup
	@$(VENV)/bin/voicebot prompts build
	@$(VENV)/bin/voicebot serve --with-pbx

stop:
	@$(VENV)/bin/voicebot serve --stop 2>/dev/null || true
	@$(PBX) stop

test: setup
	@$(VENV)/bin/voicebot knowledge check   # content CI: articles valid, accuracy not below the baseline
	@$(PY) -m pytest -q -ra --durations=25 $(PYTEST_ARGS)   # the slowest tests: CI must stay under 30 min

# `make run` never prints a secret; this does, when asked (each SIP account has its own password)
secrets:
	@test -f $(SECRETS) || { echo "no $(SECRETS) yet: run make setup"; exit 1; }
	@echo "SIP accounts on 127.0.0.1:5060 (user, password) from $(SECRETS):"
	@sed -n 's/^SIP_PASSWORD_\([A-Z0-9_]*\)=\(.*\)$$/\1 \2/p' $(SECRETS) | \
	  while read -r account password; do \
	    printf '  %-24s %s\n' "$$(echo "$$account" | tr 'A-Z_' 'a-z-')" "$$password"; \
	  done

install: setup
	@$(VENV)/bin/voicebot install

uninstall:
	@$(VENV)/bin/voicebot install --uninstall

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
