# shellcheck shell=bash
# Sourced by the client suites (integration/clients, integration/cri): what both need.

# oci_archive LAYER_TAR NAME IMAGE_CONFIG OUT: one uncompressed layer, an image config whose
# "config" object is IMAGE_CONFIG (JSON), a manifest and an index naming the image NAME (the
# annotation containerd's import reads), written as an OCI layout tar to OUT.
oci_archive() {
	local layer=$1 name=$2 config=$3 out=$4 o b l c m
	o=$(mktemp -d "$out.XXXXXX") || return 1
	b=$o/blobs/sha256
	mkdir -p "$b"
	l=$(sha256sum <"$layer" | cut -d' ' -f1) && cp "$layer" "$b/$l" || return 1
	printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$config" "$l" >"$o/config"
	c=$(sha256sum <"$o/config" | cut -d' ' -f1); mv "$o/config" "$b/$c"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
		"$c" "$(stat -c %s "$b/$c")" "$l" "$(stat -c %s "$b/$l")" >"$o/manifest"
	m=$(sha256sum <"$o/manifest" | cut -d' ' -f1); mv "$o/manifest" "$b/$m"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
		"$m" "$(stat -c %s "$b/$m")" "$name" "${name##*:}" >"$o/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$o/oci-layout"
	tar -C "$o" -cf "$out" . && rm -rf "$o"
}

# busybox_rootfs DIR: a root filesystem of Debian's busybox-static, every applet linked.
busybox_rootfs() {
	local r=$1 a
	mkdir -p "$r"/{bin,proc,sys,dev,etc,tmp,root} || return 1
	cp /bin/busybox "$r/bin/busybox" || return 1
	for a in $(/bin/busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$r/etc/passwd"
	echo 'root:x:0:' >"$r/etc/group"
}

# procs_naming DIR: the pids whose command line names DIR (a suite's temp dir): the daemons it
# started and what they started (shims, conmon), so they may be stopped. Not this shell.
procs_naming() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$1" && echo "$p"
	done
}

# remove_cgroup_trees: each cgroup directory read from stdin, with everything below it: thawed,
# what is inside killed, removed deepest first (what a runtime left behind).
remove_cgroup_trees() {
	local d c p
	while read -r d; do
		find "$d" -depth -type d | while read -r c; do
			[ -f "$c/freezer.state" ] && echo THAWED >"$c/freezer.state" 2>/dev/null
			while read -r p; do kill -9 "$p" 2>/dev/null; done <"$c/cgroup.procs"
			for _ in $(seq 20); do rmdir "$c" 2>/dev/null && break; sleep 0.1; done
			[ -d "$c" ] && echo "# cleanup: could not remove cgroup $c"
		done
	done
}
