# berth: build, demo and test. `make test` and `make demo` do all set-up on Debian 12 as root.

CARGO ?= cargo
TARGET_TRIPLE := x86_64-unknown-linux-gnu
# Where cargo puts its output: CARGO_TARGET_DIR if set, as cargo does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BERTH := $(TARGET_DIR)/$(TARGET_TRIPLE)/release/berth
RUNTIMETEST := $(TARGET_DIR)/$(TARGET_TRIPLE)/release/runtimetest
INTEGRATION := $(TARGET_DIR)/release/integration
DEMO_BUNDLE := demo-bundle

.PHONY: all build runtimetest integration-bin deps deps-managers test unit integration compare \
	build-faults test-faults \
	test-clients test-cri test-cri-cgroupv2 deps-cri cri-bin test-apparmor test-cgroupv2 lint demo clean soak soak-short \
	fuzz fuzz-short fuzz-deps \
	bench bench-quick bench-deps bench-bin

all: build

# Static (static-pie, glibc): no dynamic loader at each of berth's execs (create re-executes
# itself once for the CVE-2019-5736 defence), about 0.4 ms less per exec.
# Peak RSS: relative relocations packed (DT_RELR: 3 KiB instead of 250 KiB of .rela.dyn read at
# every start), and the code a create runs linked first (link/cc-ordered).
BERTH_RUSTFLAGS := -C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs \
	-C linker=$(CURDIR)/link/cc-ordered
build:
	RUSTFLAGS="$(BERTH_RUSTFLAGS)" $(CARGO) build --release -p berth --target $(TARGET_TRIPLE)

# Static, so it runs in any rootfs.
runtimetest:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p runtimetest --target $(TARGET_TRIPLE)

integration-bin:
	$(CARGO) build --release -p integration

# Debian packages the tests need: busybox for bundles, runc as the reference runtime, iproute2
# for network namespaces, protoc for the CRI client's generated API (built with the workspace).
deps:
	@missing=""; \
	for p in busybox-static runc iproute2 protobuf-compiler; do \
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

# The Debian packages named in $(1) that are missing, installed without recommends.
define apt_install
@missing=""; \
	for p in $(1); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi
endef

# The clients that exec the runtime: Podman (with conmon, and catatonit for --init), Docker and
# containerd's ctr.
deps-managers:
	$(call apt_install,podman conmon catatonit containerd docker.io)

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

# Kubernetes' path: a private containerd with its CRI plugin, handlers `berth` and `runc`, a
# loopback-only CNI network, images made here; the project's CRI client (integration/cri) runs
# each scenario with both handlers and fails when berth fails any. About 2 minutes.
CRI_CLIENT := $(TARGET_DIR)/debug/cri-client
CRI_PAUSE := $(TARGET_DIR)/$(TARGET_TRIPLE)/release/cri-pause
deps-cri:
	$(call apt_install,containerd containernetworking-plugins busybox-static runc protobuf-compiler)

# The client is a test tool: a debug build is quick and enough. The pause runs in the sandbox
# image, so it is static.
cri-bin:
	$(CARGO) build -p cri-client
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release -p cri-pause --target $(TARGET_TRIPLE)

test-cri: deps-cri build cri-bin
	integration/cri/run.sh $(BERTH) $(CRI_CLIENT) $(CRI_PAUSE) $$(command -v runc)

# The same on pure cgroup v2 in the ../shared/vm guest, whose root is this host's / (so
# containerd is there): the scenarios that touch cgroups, devices or many pods, first with the
# cgroupfs driver (busybox as PID 1), then with systemd's (the host's systemd as PID 1,
# SystemdCgroup = true, pods in slices), as most nodes run. About 10 minutes under TCG.
CRI_CGROUPV2_CASES := pod/lifecycle,container/lifecycle,exec/sync,resources/,security/privileged,\
	security/defaults,stats,pods/parallel,nothing-left
CRI_GUEST = BERTH_CRI_SCENARIOS=$(subst $(eval) ,,$(CRI_CGROUPV2_CASES)) BERTH_CRI_TMPDIR=/run \
	OCIVM_ENV="BERTH_CRI_SCENARIOS BERTH_CRI_TMPDIR BERTH_CRI_SYSTEMD" OCIVM_TIMEOUT=1500 \
	$(VM)/run-in-guest.sh $(CURDIR) integration/cri/run.sh $(abspath $(BERTH)) \
	$(abspath $(CRI_CLIENT)) $(abspath $(CRI_PAUSE)) $$(command -v runc)
test-cri-cgroupv2: deps-cri build cri-bin
	$(CRI_GUEST)
	BERTH_CRI_SYSTEMD=1 OCIVM_INIT=systemd OCIVM_ROOT=host $(CRI_GUEST)

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

test: deps unit fuzz-short integration compare test-faults soak-short test-clients

# libFuzzer on what berth parses from untrusted files (fuzz/fuzz_targets): config.json with its
# checks and seccomp compile, and exec's process.json. A crash, a panic or an input that takes
# over FUZZ_TIMEOUT seconds fails the run; the input is left in fuzz/artifacts/TARGET/.
# cargo fuzz passes rustc flags that stable refuses unless RUSTC_BOOTSTRAP is set, and a machine
# here has only the stable toolchain. No sanitizer (-s none): the targets are safe Rust, and
# ASan would slow every run for no gain there. Instrumented builds go in their own target dir.
FUZZ_TARGETS := config process
FUZZ_SECONDS ?= 60
FUZZ_SHORT_SECONDS ?= 15
FUZZ_TIMEOUT ?= 10
FUZZ_CARGO := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_BUILD_FLAGS := -s none --target-dir $(abspath $(TARGET_DIR))/fuzz
CARGO_FUZZ_VERSION := 0.13.2

fuzz-deps:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || \
		CARGO_TARGET_DIR=$(abspath $(TARGET_DIR))/cargo-fuzz-install \
		$(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

# Seeds (fuzz/seeds, checked in) are read; what the fuzzer finds goes to fuzz/corpus (not
# checked in), which later runs start from.
define fuzz_run
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t && \
		echo "fuzz: $$t for $(1) s" && \
		$(FUZZ_CARGO) run $(FUZZ_BUILD_FLAGS) $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(1) -timeout=$(FUZZ_TIMEOUT) -dict=fuzz/oci.dict \
			-print_final_stats=1 2>fuzz/corpus/$$t.log || \
			{ tail -n 40 fuzz/corpus/$$t.log; echo "fuzz: $$t FAILED (log: fuzz/corpus/$$t.log)"; exit 1; }; \
		grep -E '^(Done|stat::number_of_executed_units)' fuzz/corpus/$$t.log; \
	done
endef

fuzz: fuzz-deps
	$(FUZZ_CARGO) build $(FUZZ_BUILD_FLAGS)
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-short: fuzz-deps
	$(FUZZ_CARGO) build $(FUZZ_BUILD_FLAGS)
	$(call fuzz_run,$(FUZZ_SHORT_SECONDS))

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
# built here; the guest only runs them (plus the state record's cases). About 15 minutes under
# TCG.
# The state record's cleanup, with a v2 cgroup and with a systemd unit.
RECORD_CASES := state/,races/delete_during_create,races/start_twice
CGROUPV2_CASES := cgroups/,update/,events/,systemd/,escapes/devices,cli/pause_resume,\
	lifecycle/kill,lifecycle/delete,kill/contract,exec/namespaces_and_cgroup,exec/sub_cgroup,\
	exec/paused_and_stopped,config/linux_cgroups_limits,$(RECORD_CASES)
SYSTEMD_CASES := cgroups/,update/,events/,systemd/,escapes/devices,cli/pause_resume,\
	lifecycle/delete,exec/namespaces_and_cgroup,$(RECORD_CASES)
GUEST_RUN = OCIVM_TIMEOUT=1500 $(VM)/run-in-guest.sh $(CURDIR) $(abspath $(INTEGRATION)) \
	--runtime $(abspath $(BERTH)) --runtimetest $(abspath $(RUNTIMETEST))
test-cgroupv2: build runtimetest integration-bin
	$(GUEST_RUN) --filter $(subst $(eval) ,,$(CGROUPV2_CASES))
	OCIVM_INIT=systemd $(GUEST_RUN) --systemd-cgroup --filter $(subst $(eval) ,,$(SYSTEMD_CASES))

# berth beside runc, crun and youki (each where installed) and the kernel's floor, in one run on
# the same bundles: hyperfine medians, ratios, and how mounts, masked paths, seccomp rules and
# hooks scale. Prints a Markdown table, saved with the raw JSON in $(TARGET_DIR)/bench/. It only
# reports (it fails when a command fails or hangs, never on a timing), and cleans up after
# itself, interrupted or not. `bench-quick` is the same with few runs and smaller N (1-2 min).
# crun 1.8 refuses this kind of host's hybrid cgroups: it runs with ../shared's LD_PRELOAD shim
# when that is there, and is labelled "crun (shimmed)".
BENCH := $(TARGET_DIR)/release/bench
BENCH_OUT := $(TARGET_DIR)/bench
CRUN_SHIM_SRC := $(CURDIR)/../shared/bench/crun-hybrid-shim.c
CRUN_SHIM := $(BENCH_OUT)/crun-hybrid-shim.so
# More options for the driver, e.g. BENCH_FLAGS="--runtimes runc,crun" (berth always runs).
BENCH_FLAGS ?=
BENCH_RUN = $(BENCH) --berth $(BERTH) --floor $(TARGET_DIR)/release/floor --out $(BENCH_OUT) \
	$$( [ -f $(CRUN_SHIM) ] && echo --crun-shim $(CRUN_SHIM) ) $(BENCH_FLAGS)

bench-deps:
	@missing=""; \
	for p in hyperfine time runc crun busybox-static; do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench-bin:
	$(CARGO) build --release -p bench
	@mkdir -p $(BENCH_OUT)
	@if [ -f $(CRUN_SHIM_SRC) ]; then \
		echo "cc $(CRUN_SHIM_SRC)"; \
		cc -O2 -shared -fPIC -o $(CRUN_SHIM) $(CRUN_SHIM_SRC) -ldl; \
	else \
		rm -f $(CRUN_SHIM); \
	fi

bench: deps bench-deps build bench-bin
	$(BENCH_RUN)

bench-quick: deps bench-deps build bench-bin
	$(BENCH_RUN) --quick

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
