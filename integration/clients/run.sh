#!/usr/bin/env bash
# Drives the real clients (containerd's ctr, Docker and Podman) with berth registered as their
# runtime, and with runc for reference, through the same scenarios, then prints one table per
# client: scenario | runc | berth.
#
# Each client gets private daemons, storage and sockets under one temp dir; containers use
# --network none and cgroup parents named after this run, so cleanup can find exactly what this
# run made. Every client command has a timeout, so a broken runtime can't hang CI. On exit,
# however it comes, only the daemons and processes started here are stopped.
#
# usage: integration/clients/run.sh BERTH RUNTIMETEST [RUNC]   (as root; clients installed)
# Exits 1 when berth fails any scenario; runc's failures are shown but don't fail the run.
set -uo pipefail
# shellcheck source=integration/clients-lib.sh
source "$(dirname "$0")/../clients-lib.sh"

BERTH=$(realpath "${1:?usage: run.sh BERTH RUNTIMETEST [RUNC]}")
RUNTIMETEST=$(realpath "${2:?usage: run.sh BERTH RUNTIMETEST [RUNC]}")
RUNC=$(realpath "${3:-$(command -v runc)}")
T=${BERTH_CLIENTS_TIMEOUT:-60}           # seconds for any one client command
WORK=$(mktemp -d /tmp/berth-clients.XXXXXX)
TAG=${WORK##*.}                          # names this run's cgroup parents and containers
LOGS=$(mktemp -d /tmp/berth-clients-logs.XXXXXX)   # kept: stderr of failed scenarios, daemon logs
STARTED=$SECONDS
# For working on the suite: BERTH_CLIENTS="docker", BERTH_CLIENTS_RUNTIMES="runc", and
# BERTH_CLIENTS_SCENARIOS="exec-stdout top" narrow a run.
# shellcheck disable=SC2206
RUNTIMES=(${BERTH_CLIENTS_RUNTIMES:-runc berth})
declare -A RTBIN=([runc]=$RUNC [berth]=$BERTH)
# shellcheck disable=SC2206
CLIENTS=(${BERTH_CLIENTS:-ctr docker podman})
# shellcheck disable=SC2206
SCENARIOS=(${BERTH_CLIENTS_SCENARIOS:-run-stdout exit-status env workdir user hostname
	read-only bind-volume tmpfs tty exec-stdout exec-status exec-tty exec-user exec-workdir exec-env
	exec-paused-refused top pause-unpause stop kill memory pids cpus update stats caps seccomp init restart health
	leak-20})
# What ctr has no flag for.
# shellcheck disable=SC2034 # read through ${!na}
NA_ctr=" user hostname pids init health exec-env update "
declare -A RES WHYS
PIDS=()                                  # daemons started here

# --- cleanup ---------------------------------------------------------------------------------

cleanup() {
	trap - EXIT INT TERM
	set +e
	echo "# cleanup"
	# Containers first, through their clients, so the runtimes tear them down as usual.
	local r p d
	if [ -S "$WORK/docker/docker.sock" ]; then
		for d in $(docker_cli ps -aq 2>/dev/null); do timeout 30 "${DOCKER[@]}" rm -f "$d" >/dev/null 2>&1; done
	fi
	if [ -S "$WORK/containerd/containerd.sock" ]; then
		for d in $(timeout 10 "${CTR[@]}" task ls -q 2>/dev/null); do
			timeout 10 "${CTR[@]}" task kill -s SIGKILL "$d" >/dev/null 2>&1
			timeout 10 "${CTR[@]}" task rm -f "$d" >/dev/null 2>&1
		done
		for d in $(timeout 10 "${CTR[@]}" containers ls -q 2>/dev/null); do
			timeout 10 "${CTR[@]}" containers rm "$d" >/dev/null 2>&1
		done
	fi
	for r in "${RUNTIMES[@]}"; do
		[ -d "$WORK/podman/$r" ] && timeout 60 podman "${PODMAN_G[@]}" --root "$WORK/podman/$r/root" \
			--runroot "$WORK/podman/$r/run" --tmpdir "$WORK/podman/$r/tmp" --runtime "${RTBIN[$r]}" \
			rm -af -t 0 >/dev/null 2>&1
	done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null
	done
	for p in $(procs_naming "$WORK"); do kill -9 "$p" 2>/dev/null; done
	# Cgroups under this run's parents: what a runtime left behind (the leak scenario has already
	# reported it). Thaw, kill what is inside, remove the deepest first.
	find /sys/fs/cgroup/*/ -maxdepth 1 -type d -name "bc-$TAG-*" 2>/dev/null | remove_cgroup_trees
	# Mounts the clients left under the temp dir (overlays, shm), deepest first.
	awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	cp "$WORK/docker/dockerd.log" "$WORK/containerd/containerd.log" "$LOGS/" 2>/dev/null
	rm -rf "$WORK" 2>/dev/null
	echo "# logs kept in $LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- client command lines ------------------------------------------------------------------

DOCKER=(docker -H "unix://$WORK/docker/docker.sock")
CTR=(ctr -a "$WORK/containerd/containerd.sock" -n berth-clients)
PODMAN_G=(--storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
# The docker CLI's own config, not root's (podman reads it too, and wants the file).
export DOCKER_CONFIG=$WORK/docker-cli
mkdir -p "$DOCKER_CONFIG" && echo '{}' >"$DOCKER_CONFIG/config.json"

docker_cli() { timeout -k 5 "$T" "${DOCKER[@]}" "$@"; }

# Selects client C with runtime R: CLI is its command line, and the rest what its runs need.
use() {
	C=$1 R=$2
	case $C in
	docker) CLI=("${DOCKER[@]}") IMG=bc-bb:1 ;;
	ctr) CLI=("${CTR[@]}") IMG=docker.io/library/bc-bb:1
		CTR_RT=(--runc-binary "${RTBIN[$R]}" --runc-root "$WORK/ctr-root/$R") ;;
	podman) CLI=(podman "${PODMAN_G[@]}" --root "$WORK/podman/$R/root" --runroot "$WORK/podman/$R/run"
		--tmpdir "$WORK/podman/$R/tmp" --runtime "${RTBIN[$R]}") IMG=localhost/bc-bb:1 ;;
	esac
}

# The client with a timeout; its stderr goes to the scenario's log.
cl() { timeout -k 5 "$T" "${CLI[@]}" "$@" 2>>"$ERR"; }

# The client on a terminal (script gives it a pty), for -t: output has CRs, which go.
cl_tty() {
	SHELL=/bin/bash timeout -k 5 "$T" script -qec "$(printf '%q ' "${CLI[@]}" "$@")" /dev/null \
		</dev/null 2>>"$ERR" | tr -d '\r'
	return "${PIPESTATUS[0]}"
}

# Translates docker-style run options (the scenarios' vocabulary) into XO for client C.
CTR_DEFAULT_CAPS="CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
	NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE"
run_opts() {
	XO=()
	TTY=
	case $C in
	docker) XO=(--runtime "$([ "$R" = berth ] && echo berth || echo runc-ref)" --network none) ;;
	podman) XO=(--network none --cgroup-parent "/bc-$TAG-podman-$R"
		--ulimit nofile=1024:1024 --ulimit nproc=1024:1024) ;;
	esac
	local drop_all="" adds=" " c
	while [ $# -gt 0 ]; do
		case $1 in
		-t) TTY=1 XO+=(-t) ;;
		--seccomp-default) [ "$C" = ctr ] && XO+=(--seccomp) ;;   # docker and podman: always on
		--cap-drop) [ "$C" = ctr ] && [ "$2" = ALL ] && drop_all=1 || XO+=("$1" "$2"); shift ;;
		--cap-add) if [ "$C" = ctr ]; then adds+="$2 "; XO+=(--cap-add "CAP_$2"); else XO+=("$1" "$2"); fi; shift ;;
		--cidfile) [ "$C" != ctr ] && XO+=("$1" "$2"); shift ;;
		-e | -w | -v | --tmpfs | --memory | --cpus)
			if [ "$C" = ctr ]; then
				case $1 in
				-e) XO+=(--env "$2") ;;
				-w) XO+=(--cwd "$2") ;;
				-v) XO+=(--mount "type=bind,src=${2%%:*},dst=${2#*:},options=rbind:rw") ;;
				--tmpfs) XO+=(--mount "type=tmpfs,src=tmpfs,dst=$2,options=nosuid:nodev") ;;
				--memory) XO+=(--memory-limit "$2") ;;
				--cpus) XO+=(--cpus "$2") ;;
				esac
			else
				XO+=("$1" "$2")
			fi
			shift ;;
		-u | --hostname | --pids-limit | --health-cmd | --health-interval) XO+=("$1" "$2"); shift ;;
		*) XO+=("$1") ;;   # --read-only, --init
		esac
		shift
	done
	# ctr has no "ALL": drop each capability of its default set but the ones added.
	if [ -n "$drop_all" ]; then
		for c in $CTR_DEFAULT_CAPS; do
			case $adds in *" $c "*) ;; *) XO+=(--cap-drop "CAP_$c") ;; esac
		done
	fi
}

# The cgroup path of a ctr container.
ctr_cg() { echo "/bc-$TAG-ctr-$R/$1"; }

# run_fg NAME [options] -- CMD...: runs to completion and removes it; stdout, exit status.
run_fg() {
	local n=$1; shift
	local o=(); while [ "$1" != -- ]; do o+=("$1"); shift; done; shift
	run_opts "${o[@]}"
	local a
	case $C in
	ctr) a=(run --rm "${CTR_RT[@]}" --cgroup "$(ctr_cg "$n")" "${XO[@]}" "$IMG" "$n" "$@") ;;
	*) a=(run --rm --name "$n" "${XO[@]}" "$IMG" "$@") ;;
	esac
	if [ -n "$TTY" ]; then cl_tty "${a[@]}"; else cl "${a[@]}" </dev/null; fi
}

# run_bg NAME [options] -- CMD...: a detached container, running when this returns 0.
declare -A BGRC
run_bg() {
	local n=$1; shift
	local o=(); while [ "$1" != -- ]; do o+=("$1"); shift; done; shift
	run_opts "${o[@]}"
	case $C in
	ctr)
		# ctr's own foreground run, in the background: its exit status is the container's.
		BGRC[$n]=$WORK/bg-$C-$n.rc
		rm -f "${BGRC[$n]}"
		( timeout -k 5 600 "${CLI[@]}" run --rm "${CTR_RT[@]}" --cgroup "$(ctr_cg "$n")" "${XO[@]}" "$IMG" \
			"$n" "$@" </dev/null >/dev/null 2>>"$ERR"; echo $? >"${BGRC[$n]}" ) &
		for _ in $(seq $((T * 5))); do
			[ "$(cstatus "$n")" = running ] && return 0
			[ -f "${BGRC[$n]}" ] && return 1
			sleep 0.2
		done
		return 1 ;;
	*) cl run -d --name "$n" "${XO[@]}" "$IMG" "$@" >/dev/null ;;
	esac
}

cstatus() { # NAME: running, paused, exited...
	case $C in
	ctr) cl task ls | awk -v n="$1" '$1 == n {print tolower($3)}' ;;
	*) cl inspect -f '{{.State.Status}}' "$1" ;;
	esac
}

cpid() {
	case $C in
	ctr) cl task ls | awk -v n="$1" '$1 == n {print $2}' ;;
	*) cl inspect -f '{{.State.Pid}}' "$1" ;;
	esac
}

cwait() { # NAME: prints the exit status
	case $C in
	ctr)
		for _ in $(seq $((T * 5))); do [ -s "${BGRC[$1]}" ] && { cat "${BGRC[$1]}"; return; }; sleep 0.2; done
		echo timeout ;;
	*) cl wait "$1" ;;
	esac
}

crm() {
	case $C in
	ctr)
		cl task kill -s SIGKILL "$1" >/dev/null
		[ -n "${BGRC[$1]:-}" ] && cwait "$1" >/dev/null
		cl task rm -f "$1" >/dev/null
		cl containers rm "$1" >/dev/null ;;
	*) cl rm -f "$1" >/dev/null ;;
	esac
	return 0
}

cpause() { if [ "$C" = ctr ]; then cl task pause "$1"; else cl pause "$1" >/dev/null; fi; }
cunpause() { if [ "$C" = ctr ]; then cl task resume "$1"; else cl unpause "$1" >/dev/null; fi; }
ckill() { # SIGNAL NAME
	if [ "$C" = ctr ]; then cl task kill -s "SIG$1" "$2"; else cl kill -s "$1" "$2" >/dev/null; fi
}
cstop() { # GRACE NAME: SIGTERM, then SIGKILL after GRACE seconds
	case $C in
	ctr)
		cl task kill -s SIGTERM "$2"
		for _ in $(seq $(($1 * 10))); do [ -s "${BGRC[$2]}" ] && return 0; sleep 0.1; done
		cl task kill -s SIGKILL "$2" ;;
	*) cl stop -t "$1" "$2" >/dev/null ;;
	esac
}

# cexec [-t] [-u U] [-w D] [-e K=V] NAME CMD...
cexec() {
	local o=() tty=
	while :; do
		case $1 in
		-t) tty=1 o+=(-t) ;;
		-u) if [ "$C" = ctr ]; then o+=(--user "$2"); else o+=(-u "$2"); fi; shift ;;
		-w) if [ "$C" = ctr ]; then o+=(--cwd "$2"); else o+=(-w "$2"); fi; shift ;;
		-e) o+=(-e "$2"); shift ;;
		*) break ;;
		esac
		shift
	done
	local n=$1; shift
	local a
	if [ "$C" = ctr ]; then a=(task exec --exec-id "x$RANDOM" "${o[@]}" "$n" "$@"); else a=(exec "${o[@]}" "$n" "$@"); fi
	if [ -n "$tty" ]; then cl_tty "${a[@]}"; else cl "${a[@]}" </dev/null; fi
}

# The host's view of a container's cgroup file: CTRL FILE PID.
cgfile() {
	local p
	p=$(awk -F: -v c="$1" '$2 ~ "(^|,)" c "(,|$)" {print $3}' "/proc/$3/cgroup")
	cat "/sys/fs/cgroup/$1$p/$2"
}

# --- scenarios -----------------------------------------------------------------------------
# Each is sc_NAME, run with C and R set; returns non-zero with WHY set when it fails.

WHY=
want() { # WHAT GOT EXPECTED
	[ "$2" = "$3" ] && return 0
	WHY="$1: got '$(printf '%s' "$2" | tr '\n' '|' | cut -c1-200)', want '$3'"
	return 1
}
has() { # WHAT GOT SUBSTRING
	case $2 in *"$3"*) return 0 ;; esac
	WHY="$1: got '$(printf '%s' "$2" | tr '\n' '|' | cut -c1-200)', want '$3' in it"
	return 1
}
want_rc() { want "exit status" "$1" "$2"; }
nm() { echo "bc-$TAG-$R-$1"; }

sc_run_stdout() { local o; o=$(run_fg "$(nm run)" -- echo "hello from $R"); want stdout "$o" "hello from $R"; }
sc_exit_status() { run_fg "$(nm exit)" -- sh -c 'exit 42'; want_rc $? 42; }
sc_env() { local o; o=$(run_fg "$(nm env)" -e BC_VAR=env-ok -- sh -c 'echo "$BC_VAR"'); want env "$o" env-ok; }
sc_workdir() { local o; o=$(run_fg "$(nm wd)" -w /tmp -- pwd); want cwd "$o" /tmp; }
sc_user() { local o; o=$(run_fg "$(nm user)" -u 1234:5678 -- sh -c 'echo "$(id -u):$(id -g)"'); want ids "$o" 1234:5678; }
sc_hostname() { local o; o=$(run_fg "$(nm host)" --hostname bc-host -- hostname); want hostname "$o" bc-host; }
sc_read_only() {
	local o
	o=$(run_fg "$(nm ro)" --read-only -- sh -c 'touch /probe 2>/dev/null && echo writable || echo read-only')
	want "root file system" "$o" read-only
}
sc_bind_volume() {
	local v=$WORK/vol/$C-$R o
	mkdir -p "$v" && echo from-host >"$v/in"
	o=$(run_fg "$(nm vol)" -v "$v:/data" -- sh -c 'cat /data/in && echo from-container >/data/out')
	want "read in container" "$o" from-host && want "written on host" "$(cat "$v/out" 2>/dev/null)" from-container
}
sc_tmpfs() {
	local o
	o=$(run_fg "$(nm tmpfs)" --tmpfs /scratch -- sh -c 'grep -c "^[^ ]* /scratch tmpfs " /proc/mounts; echo w >/scratch/f && cat /scratch/f')
	want "tmpfs mounted and writable" "$(printf '%s' "$o" | tr '\n' ' ')" "1 w"
}
sc_tty() {
	local o
	o=$(run_fg "$(nm tty)" -t -- sh -c '[ -t 0 ] && [ -t 1 ] && echo tty-yes; tty')
	has "on a terminal" "$o" tty-yes && has "terminal" "$o" /dev/pts/
}

# One running container per client and runtime for the exec, top and pause scenarios.
sleeper() {
	S=$(nm sleeper)
	[ "$(ERR=/dev/null cstatus "$S")" = running ] && return 0
	ERR=/dev/null crm "$S"
	run_bg "$S" -- sleep 100000 || { WHY="detached container did not start"; return 1; }
}
sc_exec_stdout() { sleeper || return; local o; o=$(cexec "$S" echo exec-out); want stdout "$o" exec-out; }
sc_exec_status() { sleeper || return; cexec "$S" sh -c 'exit 7'; want_rc $? 7; }
sc_exec_tty() {
	sleeper || return
	local o; o=$(cexec -t "$S" sh -c '[ -t 1 ] && echo tty-yes')
	has "exec -t on a terminal" "$o" tty-yes
}
sc_exec_user() { sleeper || return; local o; o=$(cexec -u 1234 "$S" id -u); want uid "$o" 1234; }
sc_exec_workdir() { sleeper || return; local o; o=$(cexec -w /tmp "$S" pwd); want cwd "$o" /tmp; }
sc_exec_env() { sleeper || return; local o; o=$(cexec -e BC_VAR=exec-env "$S" sh -c 'echo "$BC_VAR"'); want env "$o" exec-env; }
# Refused, not hung; and the same exec works once resumed, so the refusal was the pause's.
sc_exec_paused_refused() {
	sleeper || return
	cpause "$S" || { WHY="pause failed"; return 1; }
	cexec "$S" echo ran >/dev/null
	local rc=$? o
	cunpause "$S" || { WHY="unpause failed"; return 1; }
	case $rc in
	0) WHY="exec into a paused container succeeded"; return 1 ;;
	124 | 137) WHY="exec into a paused container hung (timeout)"; return 1 ;;
	esac
	o=$(cexec "$S" echo ran)
	want "exec once resumed" "$o" ran
}
sc_top() {
	sleeper || return
	local o pid; o=$(if [ "$C" = ctr ]; then cl task ps "$S"; else cl top "$S"; fi)
	pid=$(cpid "$S")
	# docker and podman show the command; ctr the PIDs.
	if [ "$C" = ctr ]; then
		printf '%s\n' "$o" | awk '{print $1}' | grep -qx "$pid" && return 0
	else
		printf '%s\n' "$o" | grep -q 'sleep 100000' && return 0
	fi
	WHY="process list: '$(printf '%s' "$o" | tr '\n' '|' | cut -c1-200)'"; return 1
}
sc_pause_unpause() {
	sleeper || return
	local pid; pid=$(cpid "$S")
	cpause "$S" || { WHY="pause failed"; return 1; }
	if ! want "freezer when paused" "$(cgfile freezer freezer.state "$pid")" FROZEN ||
		! want "status when paused" "$(cstatus "$S")" paused; then
		cunpause "$S"; return 1
	fi
	cunpause "$S" || { WHY="unpause failed"; return 1; }
	want "freezer when resumed" "$(cgfile freezer freezer.state "$pid")" THAWED &&
		want "status when resumed" "$(cstatus "$S")" running
}
sc_stop() {
	local a b t0 rc
	# A container that exits on SIGTERM stops at once, with its own status.
	a=$(nm stop-term)
	run_bg "$a" -- sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done' || { WHY="$a did not start"; return 1; }
	sleep 1; t0=$SECONDS
	cstop 10 "$a"; rc=$(cwait "$a"); crm "$a"
	want "status after SIGTERM" "$rc" 42 || return
	[ $((SECONDS - t0)) -lt 8 ] || { WHY="stop took $((SECONDS - t0)) s for a container that exits on SIGTERM"; return 1; }
	# One that ignores it is killed after the grace period.
	b=$(nm stop-kill)
	run_bg "$b" -- sh -c 'trap "" TERM; while :; do sleep 0.1; done' || { WHY="$b did not start"; return 1; }
	sleep 1; t0=$SECONDS
	cstop 2 "$b"; rc=$(cwait "$b"); crm "$b"
	want "status after the grace period" "$rc" 137 || return
	[ $((SECONDS - t0)) -ge 2 ] || { WHY="killed before the 2 s grace period"; return 1; }
}
sc_kill() {
	local a b rc
	a=$(nm kill-usr1)
	run_bg "$a" -- sh -c 'trap "exit 10" USR1; while :; do sleep 0.1; done' || { WHY="$a did not start"; return 1; }
	sleep 1; ckill USR1 "$a"; rc=$(cwait "$a"); crm "$a"
	want "status after SIGUSR1" "$rc" 10 || return
	b=$(nm kill-9)
	run_bg "$b" -- sleep 100000 || { WHY="$b did not start"; return 1; }
	ckill KILL "$b"; rc=$(cwait "$b"); crm "$b"
	want "status after SIGKILL" "$rc" 137
}

# One container with the three limits, read from the host through its /proc/PID/cgroup.
limited() {
	L=$(nm limits)
	[ "$(ERR=/dev/null cstatus "$L")" = running ] && return 0
	ERR=/dev/null crm "$L"
	local pids=(--pids-limit 77); [ "$C" = ctr ] && pids=()
	run_bg "$L" --memory 67108864 "${pids[@]}" --cpus 0.5 -- sleep 100000 ||
		{ WHY="limited container did not start"; return 1; }
}
sc_memory() { limited || return; want memory.limit_in_bytes "$(cgfile memory memory.limit_in_bytes "$(cpid "$L")")" 67108864; }
sc_pids() { limited || return; want pids.max "$(cgfile pids pids.max "$(cpid "$L")")" 77; }
sc_cpus() {
	limited || return
	local p; p=$(cpid "$L")
	want "cpu.cfs_quota_us/cpu.cfs_period_us" "$(cgfile cpu cpu.cfs_quota_us "$p")/$(cgfile cpu cpu.cfs_period_us "$p")" 50000/100000
}
# `update` reaches the kernel: Docker's goes through containerd's `update --resources -`,
# Podman's through `update --resources=FILE` (ctr 1.6 has no update command).
sc_update() {
	limited || return
	local p; p=$(cpid "$L")
	if [ "$C" = docker ]; then
		cl update --memory 96m --pids-limit 55 "$L" >/dev/null
	else
		cl update --memory 96m --cpu-quota 20000 "$L" >/dev/null
	fi || { WHY="update failed"; return 1; }
	want "memory.limit_in_bytes after update" "$(cgfile memory memory.limit_in_bytes "$p")" 100663296 || return
	if [ "$C" = docker ]; then
		want "pids.max after update" "$(cgfile pids pids.max "$p")" 55
	else
		want "cpu.cfs_quota_us after update" "$(cgfile cpu cpu.cfs_quota_us "$p")" 20000
	fi
}
# Each client's stats of the running container: Docker shows the limit as updated above
# (96 MiB); Podman 4.3 shows the limit it created the container with (with runc too).
sc_stats() {
	limited || return
	local o
	case $C in
	ctr) o=$(cl task metrics "$L"); has "ctr task metrics" "$o" memory.usage_in_bytes ;;
	docker) o=$(cl stats --no-stream --format '{{.MemUsage}}' "$L"); has "docker stats" "$o" "/ 96MiB" ;;
	podman) o=$(cl stats --no-stream --format '{{.MemUsage}}' "$L"); has "podman stats" "$o" "/ 67.11MB" ;;
	esac
}
sc_caps() {
	local o
	o=$(run_fg "$(nm caps)" --cap-drop ALL --cap-add CHOWN --cap-add KILL -- grep CapEff /proc/self/status)
	want CapEff "$(printf '%s' "$o" | tr -s '\t ' ' ')" "CapEff: 0000000000000021"
}

# The client's default seccomp profile: /proc/self/status says "Seccomp: 2", and runtimetest's
# probes end as those profiles say: personality(0x1ffffffff) is not an allowed persona, so it
# fails with their default errno where the kernel alone would answer it; umask runs.
sc_seccomp() {
	local o
	o=$(run_fg "$(nm seccomp)" --seccomp-default -- sh -c 'grep "^Seccomp:" /proc/self/status; /runtimetest probes')
	if printf '%s\n' "$o" | grep -Eq '^Seccomp:[[:space:]]+2$' &&
		printf '%s\n' "$o" | grep -Eq '^personality \(x86_64, args 0x1ffffffff\): errno [0-9]+$' &&
		printf '%s\n' "$o" | grep -q '^umask (x86_64, args 0x12): ran$'; then
		return 0
	fi
	WHY="probes: '$(printf '%s' "$o" | tr '\n' '|' | cut -c1-300)'"; return 1
}
sc_init() {
	local o; o=$(run_fg "$(nm init)" --init -- cat /proc/1/comm)
	case $o in docker-init | tini | catatonit | podman-init) return 0 ;; esac
	WHY="PID 1 is '$o', not the client's init"; return 1
}
# A stopped container started again runs its command again.
sc_restart() {
	local n o rc; n=$(nm restart)
	run_opts
	if [ "$C" = ctr ]; then
		o=$(cl run "${CTR_RT[@]}" --cgroup "$(ctr_cg "$n")" "$IMG" "$n" echo started </dev/null)
	else
		o=$(cl run --name "$n" "${XO[@]}" "$IMG" echo started </dev/null)
	fi
	want "first run" "$o" started || { crm "$n"; return 1; }
	if [ "$C" = ctr ]; then o=$(cl task start "$n" </dev/null); else o=$(cl start -a "$n" </dev/null); fi
	rc=$?
	crm "$n"
	want "second run" "$o" started && want_rc "$rc" 0
}
sc_health() {
	local n st; n=$(nm health)
	run_bg "$n" --health-cmd 'test -d /proc/1' --health-interval 1s -- sleep 100000 ||
		{ WHY="container did not start"; return 1; }
	if [ "$C" = podman ]; then
		# Podman's timers need systemd: run the check as the timer would.
		cl healthcheck run "$n" >/dev/null || { WHY="podman healthcheck run failed"; crm "$n"; return 1; }
	fi
	for _ in $(seq 30); do
		st=$(cl inspect -f '{{.State.Health.Status}}' "$n")
		[ "$st" = healthy ] && break
		sleep 1
	done
	crm "$n"
	want "health" "$st" healthy
}
# 20 containers run and removed in a row leave nothing under the runtime's root, no cgroup and
# no mount named after them.
sc_leak_20() {
	local i n ids=() root left
	for i in $(seq 20); do
		n=$(nm "leak-$i")
		rm -f "$WORK/cid"
		run_fg "$n" --cidfile "$WORK/cid" -- true || { WHY="run $i failed"; return 1; }
		if [ "$C" = ctr ]; then ids+=("$n"); else ids+=("$(cat "$WORK/cid")"); fi
	done
	case $C in
	ctr) root=$WORK/ctr-root/$R/berth-clients ;;
	docker) root=$WORK/docker/exec/runtime-$([ "$R" = berth ] && echo berth || echo runc-ref)/moby ;;
	podman) root=/run/$R ;;   # podman passes no --root: the runtime's default
	esac
	left=""
	for i in "${ids[@]}"; do
		[ -e "$root/$i" ] && left+=" state:$root/$i"
		for n in /sys/fs/cgroup/*/; do
			left+=$(find "$n" -type d -name "*$i*" -printf ' cgroup:%p' 2>/dev/null)
		done
		grep -qF "$i" /proc/self/mountinfo && left+=" mount:$(grep -F "$i" /proc/self/mountinfo | awk '{print $5}' | head -1)"
	done
	[ -z "$left" ] && return 0
	WHY="left behind:$(echo "$left" | cut -c1-400)"; return 1
}

# --- client set-up -------------------------------------------------------------------------

wait_for() { # SECONDS CMD...: until CMD succeeds
	local i
	for i in $(seq $(($1 * 5))); do "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.2; done
	return 1
}

# A busybox image made here from Debian's busybox-static (no registry is reachable), with
# runtimetest for the seccomp probes.
make_image() {
	local r=$WORK/rootfs
	busybox_rootfs "$r" || return 1
	cp "$RUNTIMETEST" "$r/runtimetest"
	tar -C "$r" -cf "$WORK/rootfs.tar" . || return 1
	# The same as an OCI archive for ctr.
	oci_archive "$WORK/rootfs.tar" docker.io/library/bc-bb:1 '{"Cmd":["sh"]}' "$WORK/image-oci.tar"
}

# Each prints why on failure.
setup_ctr() {
	local d=$WORK/containerd
	mkdir -p "$d" "$WORK/ctr-root"
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
EOF
	containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
	PIDS+=($!)
	wait_for "$T" timeout 5 "${CTR[@]}" version || { echo "containerd did not answer: $(tail -2 "$d/containerd.log")"; return 1; }
	timeout "$T" "${CTR[@]}" images import "$WORK/image-oci.tar" >"$d/import.log" 2>&1 ||
		{ echo "import: $(tail -2 "$d/import.log")"; return 1; }
}

setup_docker() {
	local d=$WORK/docker
	mkdir -p "$d"
	# Names of our own: Debian's dockerd already names "runc".
	cat >"$d/daemon.json" <<EOF
{
  "data-root": "$d/data",
  "exec-root": "$d/exec",
  "pidfile": "$d/dockerd.pid",
  "hosts": ["unix://$d/docker.sock"],
  "iptables": false,
  "ip6tables": false,
  "ip-masq": false,
  "bridge": "none",
  "storage-driver": "vfs",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "cgroup-parent": "/bc-$TAG-docker",
  "runtimes": {
    "berth": {"path": "$BERTH"},
    "runc-ref": {"path": "$RUNC"}
  }
}
EOF
	dockerd --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1 &
	PIDS+=($!)
	wait_for "$T" timeout 5 "${DOCKER[@]}" info || { echo "dockerd did not answer: $(tail -2 "$d/dockerd.log")"; return 1; }
	timeout "$T" "${DOCKER[@]}" import "$WORK/rootfs.tar" bc-bb:1 >"$d/import.log" 2>&1 ||
		{ echo "import: $(tail -2 "$d/import.log")"; return 1; }
}

setup_podman() { # R
	use podman "$1"
	mkdir -p "$WORK/podman/$1"
	timeout "$T" "${CLI[@]}" import -q "$WORK/rootfs.tar" "$IMG" >"$WORK/podman/$1/import.log" 2>&1 ||
		{ echo "import: $(tail -2 "$WORK/podman/$1/import.log")"; return 1; }
}

# --- main ----------------------------------------------------------------------------------

echo "# berth: $BERTH"
echo "# runc:  $RUNC ($("$RUNC" --version | head -1))"
make_image || { echo "could not build the image"; exit 1; }

for C in "${CLIENTS[@]}"; do
	declare -A SETUP=()
	case $C in
	ctr) why=$(command -v ctr >/dev/null && setup_ctr 2>&1) || SETUP[all]="containerd: ${why:-not installed}" ;;
	docker) why=$(command -v dockerd >/dev/null && setup_docker 2>&1) || SETUP[all]="dockerd: ${why:-not installed}" ;;
	esac
	for R in "${RUNTIMES[@]}"; do
		if [ "$C" = podman ] && [ -z "${SETUP[all]:-}" ]; then
			why=$(command -v podman >/dev/null && setup_podman "$R" 2>&1) || SETUP[$R]="podman: ${why:-not installed}"
		fi
		use "$C" "$R"
		for s in "${SCENARIOS[@]}"; do
			na=NA_$C
			if [[ "${!na:-}" == *" $s "* ]]; then RES[$C,$R,$s]=n/a; continue; fi
			fail=${SETUP[all]:-${SETUP[$R]:-}}
			if [ -n "$fail" ]; then RES[$C,$R,$s]=FAIL WHYS[$C,$R,$s]=$fail; continue; fi
			ERR=$LOGS/$C-$R-$s.err
			WHY=
			t0=$SECONDS
			if "sc_${s//-/_}"; then
				RES[$C,$R,$s]=ok
				rm -f "$ERR"
			else
				RES[$C,$R,$s]=FAIL
				WHYS[$C,$R,$s]="${WHY:-failed}; stderr: $(tail -c 300 "$ERR" 2>/dev/null | tr '\n' '|')"
				# The runtime's own log, where a shim kept one (ctr and docker bundles).
				find "$WORK" -name log.json -size +0 2>/dev/null | while read -r f; do
					cp "$f" "$LOGS/$C-$R-$s.$(basename "$(dirname "$f")").log.json"
				done
			fi
			printf '%-7s %-6s %-20s %-4s %3ss\n' "$C" "$R" "$s" "${RES[$C,$R,$s]}" $((SECONDS - t0))
		done
		use "$C" "$R"
		ERR=/dev/null
		crm "$(nm sleeper)" 2>/dev/null
		crm "$(nm limits)" 2>/dev/null
	done
done

# --- report --------------------------------------------------------------------------------
bad=0
for C in "${CLIENTS[@]}"; do
	echo
	printf '%-22s %-6s %-6s\n' "$C scenario" runc berth
	for s in "${SCENARIOS[@]}"; do
		printf '%-22s %-6s %-6s\n' "$s" "${RES[$C,runc,$s]:--}" "${RES[$C,berth,$s]:--}"
	done
done
echo
for C in "${CLIENTS[@]}"; do
	for s in "${SCENARIOS[@]}"; do
		for R in "${RUNTIMES[@]}"; do
			[ "${RES[$C,$R,$s]:-}" = FAIL ] || continue
			if [ "$R" = berth ]; then
				bad=$((bad + 1))
				case ${RES[$C,runc,$s]:-} in
				ok) tag="REGRESSION (ok with runc)" ;;
				FAIL) tag="also fails with runc" ;;
				*) tag="runc not run" ;;
				esac
			else
				tag="runc"
			fi
			echo "FAIL $C/$R/$s [$tag]: ${WHYS[$C,$R,$s]}"
		done
	done
done
n_ok=0 n_fail=0 n_na=0
for v in "${RES[@]}"; do case $v in ok) n_ok=$((n_ok + 1)) ;; FAIL) n_fail=$((n_fail + 1)) ;; *) n_na=$((n_na + 1)) ;; esac; done
echo "# $n_ok ok, $n_fail FAIL, $n_na n/a; berth failed $bad scenario(s); $((SECONDS - STARTED)) s"
[ "$bad" -eq 0 ]
