#!/usr/bin/env bash
# Kubernetes' path to berth: a private containerd with its CRI plugin, runtime handlers `berth`
# and `runc` (runc-v2 shims whose BinaryName is each runtime), a loopback-only CNI network and
# images made here; then the project's CRI client (integration/cri) runs every scenario with
# both handlers, speaking to containerd's socket as the kubelet does.
#
# Everything this run makes is named after its temp dir: containerd's root, state and socket,
# the runtimes' roots, the pods' cgroup parent, the CNI network. On exit, however it comes, only
# what it started is stopped, and the files containerd keeps outside its own dirs (shim sockets
# in /run/containerd/s, CNI results in /var/lib/cni/results) are removed by name.
#
# usage: integration/cri/run.sh BERTH CRI_CLIENT PAUSE [RUNC]   (as root; containerd installed)
# Exits 1 when berth fails any scenario, or when setup fails.
set -uo pipefail
# shellcheck source=integration/clients-lib.sh
source "$(dirname "$0")/../clients-lib.sh"

BERTH=$(realpath "${1:?usage: run.sh BERTH CRI_CLIENT PAUSE [RUNC]}")
CLIENT=$(realpath "${2:?usage: run.sh BERTH CRI_CLIENT PAUSE [RUNC]}")
PAUSE=$(realpath "${3:?usage: run.sh BERTH CRI_CLIENT PAUSE [RUNC]}")
RUNC=$(realpath "${4:-$(command -v runc)}")
T=${BERTH_CRI_TIMEOUT:-60}               # seconds for any one setup command
# BERTH_CRI_TMPDIR: where the run's dirs go; containerd's overlay snapshots need a filesystem
# that can be an overlay's upper dir (not an overlay itself, as a VM guest's /tmp may be).
WORK=$(mktemp -d "${BERTH_CRI_TMPDIR:-/tmp}/berth-cri.XXXXXX")
TAG=${WORK##*.}
# Kept: containerd's log, the invocations (BERTH_CRI_LOGDIR: where, e.g. out of a VM guest).
LOGS=$(mktemp -d "${BERTH_CRI_LOGDIR:-/tmp}/berth-cri-logs.XXXXXX")
D=$WORK/containerd
SOCK=$D/containerd.sock
NET=berth-cri-$TAG                       # the CNI network's name
# BERTH_CRI_SYSTEMD=1: the handlers use systemd's cgroup driver (SystemdCgroup = true), as
# most nodes do; the pods' parents are then slices named berthcri<tag>-….slice.
SYSTEMD=${BERTH_CRI_SYSTEMD:-}
CGROUP_PARENT=/berth-cri-$TAG            # every pod's cgroups go below it
DRIVER=cgroupfs
[ -n "$SYSTEMD" ] && CGROUP_PARENT=berthcri$TAG DRIVER=systemd
CTR=(ctr -a "$SOCK" -n k8s.io)
declare -A RTBIN=([berth]=$BERTH [runc]=$RUNC)
PID=

# --- cleanup ---------------------------------------------------------------------------------

cleanup() {
	trap - EXIT INT TERM
	set +e
	echo "# cleanup"
	local p c id r
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$PID" 2>/dev/null
	fi
	for p in $(procs_naming "$WORK"); do kill -9 "$p" 2>/dev/null; done
	# Containers a failed scenario left: the runtime's own delete first, then the cgroups.
	for r in berth runc; do
		[ -d "$WORK/rt/$r/k8s.io" ] || continue
		for c in $("${RTBIN[$r]}" --root "$WORK/rt/$r/k8s.io" list -q 2>/dev/null); do
			timeout 10 "${RTBIN[$r]}" --root "$WORK/rt/$r/k8s.io" delete -f "$c" >/dev/null 2>&1
		done
	done
	[ -n "$SYSTEMD" ] && systemctl stop "$CGROUP_PARENT.slice" 2>/dev/null
	find /sys/fs/cgroup/ -maxdepth 2 -type d -name "${CGROUP_PARENT#/}" 2>/dev/null | remove_cgroup_trees
	# Sandboxes' shm, overlay rootfs and netns mounts under the temp dir, deepest first.
	awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	# What containerd keeps outside its dirs, by the names it gives: a shim's socket is named
	# for sha256(<containerd address>/<namespace>/<sandbox id>), a CNI result for the network.
	while read -r id; do
		rm -f "/run/containerd/s/$(printf '%s' "$SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
		rm -f /var/lib/cni/results/cni-loopback-"$id"-* 2>/dev/null
	done 2>/dev/null <"$WORK/sandboxes"
	rm -f /var/lib/cni/results/"$NET"-* 2>/dev/null
	cp "$D/containerd.log" "$WORK"/invocations-* "$LOGS/" 2>/dev/null
	rm -rf "$WORK" 2>/dev/null
	echo "# logs kept in $LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- setup -----------------------------------------------------------------------------------

# The images: the pod's sandbox ("pause") and busybox, imported into the CRI's namespace.
make_images() {
	local r=$WORK/img/pause
	mkdir -p "$r" && cp "$PAUSE" "$r/pause" || return 1
	tar -C "$r" --owner=0 --group=0 -cf "$WORK/img/pause.tar" . || return 1
	oci_archive "$WORK/img/pause.tar" localhost/berth-cri/pause:1 '{"Entrypoint":["/pause"]}' \
		"$WORK/img/pause-oci.tar" || return 1
	busybox_rootfs "$WORK/img/busybox" || return 1
	tar -C "$WORK/img/busybox" --owner=0 --group=0 -cf "$WORK/img/busybox.tar" . || return 1
	oci_archive "$WORK/img/busybox.tar" localhost/berth-cri/busybox:1 \
		'{"Cmd":["sh"],"Env":["PATH=/bin"]}' "$WORK/img/busybox-oci.tar"
}

# Each runtime through a wrapper that records its command line, so the closing table can say
# how containerd called it; exec keeps the runtime's own pid and fds.
make_wrappers() {
	mkdir -p "$WORK/bin" "$WORK/rt/berth" "$WORK/rt/runc"
	local r
	for r in berth runc; do
		printf '#!/bin/sh\nprintf "%%s\\n" "$*" >>%s\nexec %s "$@"\n' \
			"$WORK/invocations-$r" "${RTBIN[$r]}" >"$WORK/bin/$r"
		chmod +x "$WORK/bin/$r"
	done
}

# Only `lo` in each pod's network namespace. containerd's CRI wants an address on the pod's
# eth0, so the loopback plugin gets a fixed previous result naming 127.0.0.1 and passes it on:
# no interface but lo exists and nothing leaves the machine.
make_cni() {
	mkdir -p "$WORK/cni"
	cat >"$WORK/cni/10-$NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    {
      "type": "loopback",
      "prevResult": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "pod"}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}]
      }
    }
  ]
}
EOF
}

start_containerd() {
	mkdir -p "$D"
	local r handlers=""
	for r in berth runc; do
		handlers+="
    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.$r]
      runtime_type = \"io.containerd.runc.v2\"
      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.$r.options]
        BinaryName = \"$WORK/bin/$r\"
        Root = \"$WORK/rt/$r\"
        SystemdCgroup = $([ "$DRIVER" = systemd ] && echo true || echo false)"
	done
	# restrict_oom_score_adj: this host's bounding set lacks CAP_SYS_RESOURCE, without which
	# every sandbox's oom_score_adj write (lowering it) fails, with runc too.
	cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/berth-cri/pause:1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"$handlers
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni"
    max_conf_num = 1
EOF
	containerd --config "$D/config.toml" >"$D/containerd.log" 2>&1 &
	PID=$!
	local i
	for i in $(seq $((T * 5))); do
		timeout 5 "${CTR[@]}" version >/dev/null 2>&1 && break
		kill -0 "$PID" 2>/dev/null || { echo "containerd exited: $(tail -3 "$D/containerd.log")"; return 1; }
		sleep 0.2
	done
	[ "$i" -lt $((T * 5)) ] || { echo "containerd did not answer: $(tail -3 "$D/containerd.log")"; return 1; }
	for r in pause busybox; do
		timeout "$T" "${CTR[@]}" images import "$WORK/img/$r-oci.tar" >>"$D/import.log" 2>&1 ||
			{ echo "import $r: $(tail -2 "$D/import.log")"; return 1; }
	done
}

echo "# berth: $BERTH"
echo "# runc:  $RUNC ($("$RUNC" --version | head -1))"
echo "# containerd: $(containerd --version)"
echo "# cgroups: $([ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1), driver: $DRIVER"
for step in make_images make_wrappers make_cni start_containerd; do
	why=$($step 2>&1) || { echo "setup failed in $step: $why"; exit 1; }
done

"$CLIENT" --socket "$SOCK" --cgroup-parent "$CGROUP_PARENT" ${SYSTEMD:+--systemd-cgroup} \
	--pause-image localhost/berth-cri/pause:1 --image localhost/berth-cri/busybox:1 \
	--runtime-root berth="$WORK/rt/berth/k8s.io" --runtime-root runc="$WORK/rt/runc/k8s.io" \
	--sandboxes "$WORK/sandboxes" --state-dir "$D" \
	--handlers "${BERTH_CRI_HANDLERS:-runc,berth}" ${BERTH_CRI_SCENARIOS:+--filter "$BERTH_CRI_SCENARIOS"}
rc=$?

# How containerd called each runtime: the distinct command shapes, ids and paths made generic.
for r in berth runc; do
	[ -s "$WORK/invocations-$r" ] || continue
	echo "# containerd's invocations of $r (distinct shapes, count)"
	sed -E -e "s#$WORK#WORK#g" -e 's/[0-9a-f]{64}/ID/g' -e 's/[0-9a-f]{32}/ID/g' \
		-e 's#/proc/[0-9]+/#/proc/PID/#g' -e 's/runc-process[0-9]+/runc-processN/g' \
		"$WORK/invocations-$r" | sort | uniq -c | sort -rn
done
exit $rc
