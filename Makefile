# berth: build, demo and test. `make test` and `make demo` do all set-up on Debian 12 as root.

CARGO ?= cargo
TARGET_TRIPLE := x86_64-unknown-linux-gnu
# Where cargo puts its output: CARGO_TARGET_DIR if set, as cargo does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BERTH := $(TARGET_DIR)/release/berth
RUNTIMETEST := $(TARGET_DIR)/$(TARGET_TRIPLE)/release/runtimetest
INTEGRATION := $(TARGET_DIR)/release/integration
DEMO_BUNDLE := demo-bundle

.PHONY: all build runtimetest integration-bin deps deps-managers test unit integration compare \
	build-faults test-faults \
	test-clients test-apparmor test-cgroupv2 lint demo clean soak soak-short

all: build

build:
	$(CARGO) build --release -p berth

# Static, so it runs in any rootfs.
runtimetest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p runtimetest --target $(TARGET_TRIPLE)

integration-bin:
	$(CARGO) build --release -p integration

# Debian packages the tests need: busybox for bundles, runc as the reference runtime, iproute2
# for network namespaces.
deps:
	@missing=""; \
	for p in busybox-static runc iproute2; do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@# Podman's default seccomp profile (Docker's, as Debian ships it), unpacked, not installed.
	@if [ ! -f target/containers-common/usr/share/containers/seccomp.json ]; then \
		mkdir -p target/containers-common && cd target/containers-common && \
		{ apt-get download golang-github-containers-common >/dev/null 2>&1 || \
		  { apt-get update -qq && apt-get download golang-github-containers-common; }; } && \
		dpkg -x golang-github-containers-common_*.deb . ; \
	fi

# The clients that exec the runtime: Podman (with conmon, and catatonit for --init), Docker and
# containerd's ctr.
deps-managers:
	@missing=""; \
	for p in podman conmon catatonit containerd docker.io; do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi

unit:
	$(CARGO) test --workspace

integration: build runtimetest integration-bin
	$(INTEGRATION) --runtime $(BERTH) --runtimetest $(RUNTIMETEST)

# Every case that passes on runc must pass on berth. The SIGKILL cases loop fewer times here
# (BERTH_IT_KILLS, default 300 in `make integration`): they run on both runtimes.
compare: build runtimetest integration-bin
	BERTH_IT_KILLS=$${BERTH_IT_KILLS:-30} \
		$(INTEGRATION) --runtime $(BERTH) --runtimetest $(RUNTIMETEST) --compare $$(command -v runc)

# Create/start/exec/kill/delete cycles, SOAK_PARALLEL at a time; fails if host open files,
# mounts, processes, cgroup directories or berth's peak RSS grew. Not part of `make test`
# (a few minutes); `soak-short` (100 cycles) is.
SOAK_CYCLES ?= 2000
SOAK_PARALLEL ?= 4
soak: build runtimetest integration-bin
	$(INTEGRATION) --runtime $(BERTH) --runtimetest $(RUNTIMETEST) \
		--soak $(SOAK_CYCLES) --parallel $(SOAK_PARALLEL)

soak-short: build runtimetest integration-bin
	$(INTEGRATION) --runtime $(BERTH) --runtimetest $(RUNTIMETEST) --soak 100 --parallel 2

# ctr, Docker and Podman run the same scenarios with berth and with runc (a table per client);
# fails when berth fails any. About 5 minutes.
test-clients: deps deps-managers build runtimetest
	integration/clients/run.sh $(BERTH) $(RUNTIMETEST) $$(command -v runc)

# berth with its fault points compiled in (cargo feature fault-injection, profile `faults`:
# release code without LTO). Never installed: only the reliability suite runs it.
BERTH_FAULTS := $(TARGET_DIR)/faults/berth
build-faults:
	$(CARGO) build --profile faults -p berth --features fault-injection

# Every fault point of create, start, exec, kill and delete, walked one at a time with an error
# and with a SIGKILL: the host must be left clean each time. About a minute.
test-faults: build-faults runtimetest integration-bin
	BERTH_IT_FAULTS=1 $(INTEGRATION) --runtime $(BERTH_FAULTS) --runtimetest $(RUNTIMETEST) \
		--filter faults/

test: deps unit integration compare test-faults soak-short test-clients

# process.apparmorProfile for real: this host has no AppArmor, so the check runs in a QEMU guest
# on Debian's kernel (../shared/vm, beside the repo), which has it. The guest's root is this
# host's /, so apparmor_parser and busybox come from packages installed here.
VM ?= $(CURDIR)/../shared/vm
test-apparmor: build runtimetest
	@missing=""; \
	for p in apparmor busybox-static; do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(VM)/run-in-guest.sh $(CURDIR) integration/vm/apparmor.sh $(BERTH) $(RUNTIMETEST) \
		integration/vm/berth-test.apparmor

# Resource control on a pure cgroup v2 kernel (this host is a v1 hybrid): the cgroup, update,
# events, device, pause and kill cases of the integration suite, run in the ../shared/vm guest
# (Debian's 6.1 kernel, cgroup_no_v1=all), first with busybox as PID 1 and cgroupfs, then with
# systemd 252 as PID 1 and --systemd-cgroup (transient scopes over D-Bus). The binaries are
# built here; the guest only runs them. About 15 minutes under TCG.
CGROUPV2_CASES := cgroups/,update/,events/,systemd/,escapes/devices,cli/pause_resume,\
	lifecycle/kill,lifecycle/delete,kill/contract,exec/namespaces_and_cgroup,exec/sub_cgroup,\
	exec/paused_and_stopped,config/linux_cgroups_limits
SYSTEMD_CASES := cgroups/,update/,events/,systemd/,escapes/devices,cli/pause_resume,\
	lifecycle/delete,exec/namespaces_and_cgroup
GUEST_RUN = OCIVM_TIMEOUT=1500 $(VM)/run-in-guest.sh $(CURDIR) $(abspath $(INTEGRATION)) \
	--runtime $(abspath $(BERTH)) --runtimetest $(abspath $(RUNTIMETEST))
test-cgroupv2: build runtimetest integration-bin
	$(GUEST_RUN) --filter $(subst $(eval) ,,$(CGROUPV2_CASES))
	OCIVM_INIT=systemd $(GUEST_RUN) --systemd-cgroup --filter $(subst $(eval) ,,$(SYSTEMD_CASES))

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo: deps build
	@rm -rf $(DEMO_BUNDLE) && mkdir -p $(DEMO_BUNDLE)/rootfs/bin $(DEMO_BUNDLE)/rootfs/proc \
		$(DEMO_BUNDLE)/rootfs/sys $(DEMO_BUNDLE)/rootfs/dev $(DEMO_BUNDLE)/rootfs/etc $(DEMO_BUNDLE)/rootfs/tmp
	@cp /bin/busybox $(DEMO_BUNDLE)/rootfs/bin/busybox
	@for c in sh hostname cat echo mount head ps ls; do ln -sf busybox $(DEMO_BUNDLE)/rootfs/bin/$$c; done
	@$(BERTH) spec --bundle $(DEMO_BUNDLE)
	@sed -i -e 's/"terminal": true/"terminal": false/' \
		-e 's|"sh"$$|"sh", "-c", "echo hostname: $$(hostname); echo pid: $$$$; echo mounts:; cat /proc/self/mounts; echo cgroup:; cat /proc/self/cgroup"|' \
		$(DEMO_BUNDLE)/config.json
	$(BERTH) run --bundle $(DEMO_BUNDLE) berth-demo-$$$$

clean:
	$(CARGO) clean
	rm -rf $(DEMO_BUNDLE)
