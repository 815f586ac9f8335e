#!/usr/bin/env bash
# integration/vm/apparmor.sh BERTH RUNTIMETEST PROFILE
#
# Proves process.apparmorProfile on a kernel with AppArmor. Runs as root inside the
# ../shared/vm guest (`make test-apparmor` starts it there); refuses to run anywhere AppArmor
# is off, because a skip is not a pass. It loads PROFILE (the `berth-test` profile, which
# denies reading /etc/secret), then checks what the container, the guest and the kernel see:
#   1. without a profile the container is unconfined and reads /etc/secret (so 2 is not vacuous);
#   2. with `berth-test` the container says so in /proc/self/attr/current, its read of
#      /etc/secret fails, and the kernel logs an AppArmor denial by berth-test for it; the same
#      as uid 1000, and without noNewPrivileges;
#   3. the guest sees the running container process confined by berth-test (/proc/PID/attr);
#   4. a profile that is not loaded makes `berth run` fail naming process.apparmorProfile, and
#      the container's program never runs; a bundle mount over the exec attribute neither
#      receives the write nor leaves the container unconfined;
#   5. runtimetest's lsm check passes under the profile (`ok - process.apparmorProfile`).
# State lives on the guest's tmpfs /run, never on the 9p work tree.
set -uo pipefail

if [ $# -ne 3 ]; then
	echo "usage: $0 BERTH RUNTIMETEST PROFILE" >&2
	exit 2
fi
BERTH=$(realpath -e -- "$1") || exit 2
RUNTIMETEST=$(realpath -e -- "$2") || exit 2
PROFILE=$(realpath -e -- "$3") || exit 2
NAME=berth-test
MISSING=berth-test-not-loaded
SECRET=berth-secret-7c1e

passed=0
failed=0
ok() {
	echo "ok - $*"
	passed=$((passed + 1))
}
notok() {
	echo "not ok - $*"
	failed=$((failed + 1))
}
bail() {
	echo "Bail out! $*"
	exit 1
}
# Indented copy of a file, for the log.
show() { sed 's/^/    | /' "$1"; }

echo "# kernel $(uname -r): $(cat /proc/cmdline)"
enabled=$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)
echo "# /sys/module/apparmor/parameters/enabled: ${enabled:-<missing>}"
[ "$enabled" = Y ] || bail "AppArmor is not enabled in this kernel"
if [ ! -d /sys/kernel/security/apparmor ]; then
	mount -t securityfs securityfs /sys/kernel/security || bail "cannot mount securityfs"
fi
echo "# LSMs: $(cat /sys/kernel/security/lsm)"
command -v apparmor_parser >/dev/null || bail "apparmor_parser is missing (Debian package apparmor)"
echo "# $(apparmor_parser --version | head -n1)"

apparmor_parser -r "$PROFILE" || bail "apparmor_parser -r $PROFILE failed"
grep -qx "$NAME (enforce)" /sys/kernel/security/apparmor/profiles ||
	bail "$NAME is not loaded in enforce mode: $(cat /sys/kernel/security/apparmor/profiles)"
grep -q "^$MISSING " /sys/kernel/security/apparmor/profiles && bail "$MISSING is loaded"
echo "# loaded: $(tr '\n' ' ' </sys/kernel/security/apparmor/profiles)"

W=$(mktemp -d /run/berth-aa.XXXXXX) || bail "mktemp"
chmod 755 "$W" # the user-namespace container (guest uid 100000) must reach its rootfs
ROOT=$W/state
B=$W/bundle
R=$B/rootfs
mkdir -p "$R"/bin "$R"/etc "$R"/proc "$R"/sys "$R"/dev "$R"/tmp "$R"/root
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox" || bail "no /bin/busybox (Debian package busybox-static)"
for a in sh cat echo sleep true id; do ln -s busybox "$R/bin/$a"; done
cp "$RUNTIMETEST" "$R/runtimetest" && chmod 755 "$R/runtimetest"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
# World-readable: only a MAC policy can keep the container's root from reading it.
echo "$SECRET" >"$R/etc/secret"
chmod 644 "$R/etc/secret"
cat >"$R/probe.sh" <<'EOF'
echo "uid=$(id -u)"
echo "current=$(cat /proc/self/attr/current)"
echo "apparmor/current=$(cat /proc/self/attr/apparmor/current)"
if cat /etc/secret; then echo "secret: read"; else echo "secret: refused"; fi
EOF

# config PROFILE ARG... : writes the bundle's config.json (and /config.json for runtimetest).
# PROFILE "" leaves process.apparmorProfile out. CT_UID and CT_NNP set the process's user and
# noNewPrivileges (default 0 and true); CT_MOUNT is one more mount (JSON object); CT_USERNS=1
# adds a user namespace (container 0 = guest 100000).
config() {
	local prof=$1 args="" a aa=""
	shift
	for a in "$@"; do args+="${args:+, }\"$a\""; done
	[ -n "$prof" ] && aa="\"apparmorProfile\": \"$prof\","
	local userns="" maps=""
	if [ "${CT_USERNS:-0}" = 1 ]; then
		userns='{"type": "user"}, '
		maps='"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],'
	fi
	cat >"$B/config.json" <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    $aa
    "terminal": false,
    "user": {"uid": ${CT_UID:-0}, "gid": ${CT_UID:-0}},
    "args": [$args],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "noNewPrivileges": ${CT_NNP:-true}
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "berth-aa",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]}${CT_MOUNT:+,
    $CT_MOUNT}
  ],
  "linux": {
    $maps
    "namespaces": [
      $userns{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
    ],
    "maskedPaths": ["/proc/kcore", "/proc/keys"],
    "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
	cp "$B/config.json" "$R/config.json"
}

n=0
# run OUT : berth run of the current config; output (stdout+stderr) in OUT, returns berth's status.
run() {
	n=$((n + 1))
	"$BERTH" --root "$ROOT" run --bundle "$B" "aa-$n" >"$1" 2>&1 </dev/null
}

denials() { dmesg | grep -c "apparmor=\"DENIED\".*profile=\"$NAME\".*name=\"/etc/secret\""; }

# 1. No profile: unconfined, and the secret is readable.
config "" /bin/sh /probe.sh
run "$W/plain.out"
rc=$?
show "$W/plain.out"
if [ $rc -eq 0 ] && grep -qx "current=unconfined" "$W/plain.out" && grep -qx "$SECRET" "$W/plain.out"; then
	ok "without a profile the container is unconfined and reads /etc/secret"
else
	notok "without a profile (rc $rc): expected unconfined and the secret read"
fi

# 2. berth-test: named in current, read refused, and the kernel says AppArmor refused it.
before=$(denials)
config "$NAME" /bin/sh /probe.sh
run "$W/confined.out"
rc=$?
show "$W/confined.out"
after=$(denials)
if [ $rc -eq 0 ] && grep -qx "current=$NAME (enforce)" "$W/confined.out" &&
	grep -qx "apparmor/current=$NAME (enforce)" "$W/confined.out"; then
	ok "with process.apparmorProfile the container's current label is $NAME (enforce)"
else
	notok "with process.apparmorProfile (rc $rc): current does not name $NAME (enforce)"
fi
if [ $rc -eq 0 ] && ! grep -q "$SECRET" "$W/confined.out" &&
	grep -qx "secret: refused" "$W/confined.out" && grep -q "Permission denied" "$W/confined.out"; then
	ok "$NAME refuses the container's read of /etc/secret"
else
	notok "$NAME did not refuse the read of /etc/secret (rc $rc)"
fi
if [ "$after" -gt "$before" ]; then
	ok "the kernel logged an AppArmor denial by $NAME for /etc/secret"
	dmesg | grep "apparmor=\"DENIED\".*profile=\"$NAME\"" | tail -n1 | sed 's/^/    | /'
else
	notok "no AppArmor denial by $NAME for /etc/secret in the kernel log ($before -> $after)"
fi

# 2b. The label is set before the user switch and no_new_privs: both orders must still work,
# as a non-root user (DAC lets uid 1000 read the file) and without noNewPrivileges.
for v in "1000 true" "0 false"; do
	read -r CT_UID CT_NNP <<<"$v"
	config "$NAME" /bin/sh /probe.sh
	run "$W/variant.out"
	rc=$?
	show "$W/variant.out"
	if [ $rc -eq 0 ] && grep -qx "current=$NAME (enforce)" "$W/variant.out" &&
		grep -qx "uid=$CT_UID" "$W/variant.out" && grep -qx "secret: refused" "$W/variant.out" &&
		! grep -q "$SECRET" "$W/variant.out"; then
		ok "uid $CT_UID, noNewPrivileges $CT_NNP: confined by $NAME, /etc/secret refused"
	else
		notok "uid $CT_UID, noNewPrivileges $CT_NNP (rc $rc): expected $NAME and the read refused"
	fi
done
unset CT_UID CT_NNP

# 3. Seen from the guest: the running container's process is confined.
config "$NAME" /bin/sleep 60
id=aa-outside
if "$BERTH" --root "$ROOT" create --bundle "$B" "$id" >"$W/create.out" 2>&1 </dev/null &&
	"$BERTH" --root "$ROOT" start "$id" >>"$W/create.out" 2>&1; then
	pid=$("$BERTH" --root "$ROOT" state "$id" | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
	label=""
	# start returns once the process is told to run; the label changes at its execve.
	for _ in $(seq 50); do
		label=$(tr -d '\0' <"/proc/$pid/attr/current" 2>/dev/null)
		[ "$label" = "$NAME (enforce)" ] && break
		sleep 0.1
	done
	echo "    | /proc/$pid/attr/current: $label; exe $(readlink "/proc/$pid/exe")"
	if [ "$label" = "$NAME (enforce)" ]; then
		ok "the guest sees container process $pid confined by $NAME"
	else
		notok "container process $pid has label '$label', not $NAME (enforce)"
	fi
	# 3b. An exec'd process gets the container's profile (and --apparmor overrides it).
	got=$("$BERTH" --root "$ROOT" exec "$id" /bin/cat /proc/self/attr/current 2>&1 </dev/null | tr -d '\0')
	secret=$("$BERTH" --root "$ROOT" exec "$id" /bin/cat /etc/secret 2>&1 </dev/null)
	echo "    | exec: current=$got; cat /etc/secret: $secret"
	if [ "$got" = "$NAME (enforce)" ] && ! printf '%s' "$secret" | grep -q "$SECRET"; then
		ok "an exec'd process is confined by $NAME and cannot read /etc/secret"
	else
		notok "exec'd process: label '$got', secret read: $secret"
	fi
	got=$("$BERTH" --root "$ROOT" exec --apparmor unconfined "$id" /bin/cat /proc/self/attr/current 2>&1 </dev/null | tr -d '\0')
	if [ "$got" = "unconfined" ]; then
		ok "exec --apparmor unconfined runs the process unconfined"
	else
		notok "exec --apparmor unconfined: label '$got'"
	fi
	"$BERTH" --root "$ROOT" kill "$id" KILL >/dev/null 2>&1
else
	show "$W/create.out"
	notok "berth create/start with $NAME failed"
fi
"$BERTH" --root "$ROOT" delete --force "$id" >/dev/null 2>&1

# 4. A profile that is not loaded: berth refuses, naming the field, and nothing runs.
config "$MISSING" /bin/echo container-ran
run "$W/missing.out"
rc=$?
show "$W/missing.out"
if [ $rc -ne 0 ] && grep -q "process.apparmorProfile" "$W/missing.out" &&
	! grep -q container-ran "$W/missing.out"; then
	ok "a profile that is not loaded fails berth run, naming process.apparmorProfile"
else
	notok "a profile that is not loaded (rc $rc): expected a failure naming process.apparmorProfile"
fi

# 4b. A bundle mount over the attribute must not take the write: here kernel.domainname bound
# onto /proc/thread-self/attr/apparmor/exec. A runtime that writes through it sets the
# container's domainname to "exec berth-test" and runs the container unconfined. Safe outcomes:
# the write reaches the real attribute anyway (berth uses a private procfs where it can) and
# the container is confined, or berth refuses to run it. With a user namespace too, where a
# private procfs may be refused and the mounted /proc is used.
for userns in 0 1; do
	CT_USERNS=$userns
	CT_MOUNT='{"destination": "/proc/thread-self/attr/apparmor/exec", "type": "bind",
     "source": "/proc/sys/kernel/domainname", "options": ["bind"]}'
	config "$NAME" /bin/sh -c 'echo domainname=$(cat /proc/sys/kernel/domainname); . /probe.sh'
	unset CT_USERNS CT_MOUNT
	run "$W/overmount.out"
	rc=$?
	show "$W/overmount.out"
	what="a mount over the exec attribute (user namespace: $userns)"
	if grep -q "^domainname=exec" "$W/overmount.out"; then
		notok "$what took berth's write (the container's domainname is the label)"
	elif [ $rc -eq 0 ] && grep -qx "current=$NAME (enforce)" "$W/overmount.out" &&
		grep -qx "secret: refused" "$W/overmount.out"; then
		ok "$what: the write still reached the real attribute; confined"
	elif [ $rc -ne 0 ] && grep -q "process.apparmorProfile" "$W/overmount.out" &&
		! grep -q "^current=" "$W/overmount.out"; then
		ok "$what: berth run refused, naming process.apparmorProfile"
	elif [ $rc -ne 0 ] && grep -q "lies inside procfs" "$W/overmount.out" &&
		! grep -q "^current=" "$W/overmount.out"; then
		ok "$what: berth run refused the mount inside procfs"
	else
		notok "$what (rc $rc): the container is not confined by $NAME"
	fi
done

# 5. runtimetest's own check, under the profile.
config "$NAME" /runtimetest
run "$W/runtimetest.out"
rc=$?
show "$W/runtimetest.out"
if [ $rc -eq 0 ] && grep -qx "ok - process.apparmorProfile" "$W/runtimetest.out"; then
	ok "runtimetest passes under $NAME, including its process.apparmorProfile check"
else
	notok "runtimetest under $NAME (rc $rc): expected it to pass with ok - process.apparmorProfile"
fi

echo "# $passed passed, $failed failed"
[ "$failed" -eq 0 ]
