# pycrio: `make install`, `make run`, `make test`. Run as root on Debian 12.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Debian packages the daemon and its tests use (real components, no mocks).
DEB_PACKAGES := python3 python3-venv python3-pip ca-certificates openssl \
	runc conmon crun criu catatonit containerd containernetworking-plugins \
	skopeo docker-registry apache2-utils busybox-static \
	iptables nftables iproute2 util-linux gnupg

# What the host needs to run the node test tier (tests/node): a Debian 12 VM
# with systemd and cgroup v2 under qemu, its image made with debootstrap.
NODE_HOST_PACKAGES := qemu-system-x86 seabios debootstrap e2fsprogs

PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(PLUGIN_PROJECTS))

.PHONY: install run test test-node test-shimv2 lint format clean print-deb-packages

install: .stamps/deb $(VENV)/.installed /etc/cni/net.d

# As CRI-O's packages do: a default bridge network (10.88.0.0/16), only when
# the node has no CNI configuration of its own.
/etc/cni/net.d: contrib/cni/10-pycrio-bridge.conflist
	mkdir -p $@
	if [ -z "$$(ls -A $@)" ]; then install -m 0644 $< $@/; fi

.stamps/deb: Makefile
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PACKAGES) $(NODE_HOST_PACKAGES) >/dev/null
	@mkdir -p .stamps && touch $@

$(VENV)/.installed: Makefile pyproject.toml $(PLUGIN_PROJECTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,tracing]' $(addprefix -e ,$(PLUGIN_DIRS))
	@touch $@

run: install
	exec $(VENV)/bin/pycrio

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest
	$(MAKE) test-shimv2 SHIMV2_MODULES="$(SHIMV2_QUICK)"
	$(MAKE) test-node

# The e2e container suite again with a shim v2 handler as the default runtime:
# plugins/runtime_kata driving Debian's containerd-shim-runc-v2 (docs/runtimes.md,
# tests/support/runtime_mode.py). Modules of the image service and of the daemon's
# own life do not depend on the runtime and are left out. Skips, with the reason,
# when the shim or the vm driver is not installed. `make test` runs the quick
# part (lifecycle, logs, exec/attach, stats, restarts, events) to stay within its
# time budget; `make test-shimv2` runs all of it.
SHIMV2_QUICK := containers containers_daemon streaming pod_stats events infra_container \
	status_api examples
SHIMV2_MODULES ?= $(SHIMV2_QUICK) crash_recovery kubectl kubelet_fidelity sandboxes nri \
	pod_network list_streaming maintenance metrics

test-shimv2: install
	PYCRIO_TEST_RUNTIME=shimv2 $(VENV)/bin/pytest $(patsubst %,tests/e2e/test_%.py,$(SHIMV2_MODULES))

# The node tier: tests that need systemd as PID 1 and pure cgroup v2 run in a
# qemu VM (tests/node/vm/run.py); its image is cached in /var/cache/pycrio-vm.
test-node: install
	$(PY) tests/node/vm/run.py

print-deb-packages:
	@echo $(DEB_PACKAGES)

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .stamps .pytest_cache
