#!/usr/bin/env bash
# Drives the real managers with a runtime (berth, or runc for reference): Podman, Docker and
# containerd's ctr, each with its own private root, socket and state under one temp dir, and
# checks from inside their containers that the manager's default seccomp profile is applied:
# /proc/self/status says "Seccomp: 2", and runtimetest's probe calls end as those profiles say:
# personality(0x1ffffffff) is not one of the personas they allow, so it fails with their
# default errno (EPERM or ENOSYS), where the kernel alone would just answer it; umask runs.
#
# usage: integration/managers/run.sh RUNTIME RUNTIMETEST   (as root; managers installed)
# Prints one line per check and "N passed, N failed"; exits 1 when a check failed.
set -uo pipefail

RUNTIME=$(realpath "${1:?usage: run.sh RUNTIME RUNTIMETEST}")
RUNTIMETEST=$(realpath "${2:?usage: run.sh RUNTIME RUNTIMETEST}")
WORK=$(mktemp -d /tmp/berth-managers.XXXXXX)
PASS=0
FAIL=0
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	# Mounts the managers left under the temp dir (overlays, shm, netns), deepest first.
	awk -v w="$WORK" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	rm -rf "$WORK" 2>/dev/null
	# The shims' sockets go to a fixed place whatever the root.
	true
}
trap cleanup EXIT

note() { printf '%s\n' "$*"; }
result() { # name ok detail
	if [ "$2" = ok ]; then
		PASS=$((PASS + 1)); note "ok - $1"
	else
		FAIL=$((FAIL + 1)); note "not ok - $1: $3"
	fi
}

# What runs inside every container: the seccomp mode, then the probe calls.
PROBE='grep "^Seccomp:" /proc/self/status; /runtimetest probes'

judge() { # name output
	local out=$2
	if printf '%s\n' "$out" | grep -Eq '^Seccomp:[[:space:]]+2$' &&
		printf '%s\n' "$out" | grep -Eq '^personality \(x86_64, args 0x1ffffffff\): errno [0-9]+$' &&
		printf '%s\n' "$out" | grep -q '^umask (x86_64, args 0x12): ran$'; then
		result "$1" ok
	else
		result "$1" fail "$(printf '%s' "$out" | tr '\n' '|' | cut -c1-400)"
	fi
}

wait_sock() { # path seconds
	for _ in $(seq $(($2 * 10))); do [ -S "$1" ] && return 0; sleep 0.1; done
	return 1
}

# A busybox image, made here from Debian's busybox-static: no registry is needed.
mkdir -p "$WORK/rootfs"/{bin,proc,sys,dev,etc,tmp}
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in sh grep cat true echo sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
cp "$RUNTIMETEST" "$WORK/rootfs/runtimetest"
echo 'root:x:0:0:root:/root:/bin/sh' >"$WORK/rootfs/etc/passwd"
echo 'root:x:0:' >"$WORK/rootfs/etc/group"
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .

note "# runtime: $RUNTIME"

# --- Podman (conmon runs the runtime's create; podman start/kill/delete) ---------------------
if command -v podman >/dev/null; then
	P=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp"
		--storage-driver vfs --cgroup-manager cgroupfs --events-backend file
		--runtime "$RUNTIME")
	if "${P[@]}" import -q "$WORK/rootfs.tar" localhost/berth-bb:1 >"$WORK/podman-import.log" 2>&1; then
		# Podman asks for RLIMIT_NOFILE 1048576, above this host's hard limit, which only
		# CAP_SYS_RESOURCE (absent here) could raise: ask for ordinary limits.
		out=$("${P[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/berth-bb:1 \
			sh -c "$PROBE" 2>&1)
		judge "podman run (default seccomp profile)" "$out"
		"${P[@]}" save --format docker-archive -o "$WORK/image.tar" localhost/berth-bb:1 >/dev/null 2>&1
	else
		result "podman import" fail "$(tail -3 "$WORK/podman-import.log" | tr '\n' '|')"
	fi
else
	result "podman" fail "podman is not installed (make deps-managers)"
fi

# --- Docker (dockerd with its own containerd; the runtime as an added runtime) --------------
if command -v dockerd >/dev/null; then
	D="$WORK/docker"
	mkdir -p "$D"
	dockerd --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/dockerd.pid" \
		-H "unix://$D/docker.sock" --iptables=false --ip-masq=false --bridge=none \
		--storage-driver vfs --add-runtime "berth-under-test=$RUNTIME" \
		>"$D/dockerd.log" 2>&1 &
	PIDS+=($!)
	if wait_sock "$D/docker.sock" 60; then
		DC=(/usr/bin/docker -H "unix://$D/docker.sock")
		for _ in $(seq 50); do "${DC[@]}" info >/dev/null 2>&1 && break; sleep 0.2; done
		if "${DC[@]}" import "$WORK/rootfs.tar" berth-bb:1 >/dev/null 2>&1; then
			out=$("${DC[@]}" run --rm --runtime berth-under-test --network none berth-bb:1 \
				sh -c "$PROBE" 2>&1)
			judge "docker run (default seccomp profile)" "$out"
		else
			result "docker import" fail "$(tail -3 "$D/dockerd.log" | tr '\n' '|')"
		fi
	else
		result "dockerd" fail "no socket: $(tail -3 "$D/dockerd.log" | tr '\n' '|')"
	fi
else
	result "docker" fail "docker.io is not installed (make deps-managers)"
fi

# --- containerd + ctr (the runc v2 shim with --runc-binary) ---------------------------------
if command -v containerd >/dev/null && command -v ctr >/dev/null; then
	C="$WORK/containerd"
	mkdir -p "$C"
	cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
EOF
	containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
	PIDS+=($!)
	if wait_sock "$C/containerd.sock" 60; then
		CT=(ctr -a "$C/containerd.sock" -n berth-managers)
		if [ -f "$WORK/image.tar" ] &&
			"${CT[@]}" images import --no-unpack=false "$WORK/image.tar" >"$C/import.log" 2>&1; then
			ref=$("${CT[@]}" images ls -q | head -1)
			out=$("${CT[@]}" run --rm --runc-binary "$RUNTIME" --seccomp "$ref" berth-ctr-$$ \
				sh -c "$PROBE" 2>&1)
			judge "ctr run --seccomp" "$out"
		else
			result "ctr images import" fail "$(tail -3 "$C/import.log" 2>/dev/null | tr '\n' '|')"
		fi
	else
		result "containerd" fail "no socket: $(tail -3 "$C/containerd.log" | tr '\n' '|')"
	fi
else
	result "containerd" fail "containerd is not installed (make deps-managers)"
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
