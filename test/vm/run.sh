#!/usr/bin/env bash
# Boot a Debian cloud kernel under QEMU (software emulation, TCG) with a
# minimal busybox initramfs and run one static binary inside the guest.
#
# The guest console is streamed to stdout and to a log file; the script exits
# with the exit code of the binary inside the guest (125 if the guest never
# reported one, e.g. timeout or kernel panic).
#
# See test/vm/README.md for details.
set -euo pipefail

PROG=${0##*/}
MARKER=CONNWATCH-VM-EXIT

usage() {
	cat <<EOF
usage: $PROG [OPTIONS] -- BINARY [ARGS...]

Boots a Debian cloud kernel with qemu-system-x86_64 (TCG) and runs BINARY
(a static x86-64 executable, e.g. built with CGO_ENABLED=0) as root inside it.

options:
  --arch ARCH        amd64 (default: qemu-system-x86_64) or arm64
                     (qemu-system-aarch64 -machine virt -cpu max; kernel 6.12
                     from trixie, busybox-static:arm64 from trixie)
  --kernel SPEC      5.10 | 6.1 | 6.12 | all | exact package name such as
                     linux-image-6.1.0-57-cloud-amd64 (default: \${CONNWATCH_VM_KERNEL:-6.12})
  --env KEY=VALUE    export KEY=VALUE in the guest before running BINARY
                     (repeatable; --env KEY copies KEY from the host environment)
  --add SRC:DST      copy host file or directory SRC to absolute path DST in the guest (repeatable)
  --modules LIST     comma separated kernel modules to load in the guest, with their
                     dependencies (e.g. veth,sch_netem,nf_tables) (repeatable)
  --workdir DIR      guest working directory for BINARY (default: /connwatch, where BINARY is placed)
  --bpf-stats        sysctl kernel.bpf_stats_enabled=1 in the guest
  --timeout SEC      kill QEMU after SEC seconds (default: \${CONNWATCH_VM_TIMEOUT:-600})
  --mem MB           guest memory (default: 1024)
  --smp N            guest CPUs (default: 2)
  --append ARGS      extra kernel command line arguments
  --verbose          do not pass 'quiet' on the kernel command line
  --cache DIR        cache directory (default: \${CONNWATCH_VM_CACHE:-\$HOME/.cache/connwatch-vm})
  --log FILE         console log file (single kernel only; default: CACHE/logs/...)
  --log-dir DIR      directory for console logs (default: CACHE/logs)
  --result-file FILE append one line per kernel: series pkg version exit_code seconds log
  -h, --help         this help

environment:
  CONNWATCH_VM_CACHE, CONNWATCH_VM_TIMEOUT, CONNWATCH_VM_KERNEL   defaults for the options above
  CONNWATCH_VM_PKG_5_10, CONNWATCH_VM_PKG_6_1, CONNWATCH_VM_PKG_6_12   pin the exact kernel package for a series
  CONNWATCH_VM_ACCEL   QEMU accelerator (default: tcg)

The guest sees CONNWATCH_VM=1 and CONNWATCH_VM_KERNEL=<release> in its environment.
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	log "error: $*"
	exit 125
}

# ---------------------------------------------------------------- arguments
KERNEL_SPEC=${CONNWATCH_VM_KERNEL:-6.12}
CACHE=${CONNWATCH_VM_CACHE:-${HOME:-/root}/.cache/connwatch-vm}
TIMEOUT=${CONNWATCH_VM_TIMEOUT:-600}
ACCEL=${CONNWATCH_VM_ACCEL:-tcg}
MEM=1024
SMP=2
APPEND_EXTRA=""
QUIET=quiet
BPF_STATS=0
WORKDIR=/connwatch
LOG_FILE=""
LOG_DIR=""
RESULT_FILE=""
ENVS=()
ADDS=()
MODULES=()
ARCH=amd64

need_arg() { [[ $# -ge 2 ]] || die "option $1 needs an argument"; }

while [[ $# -gt 0 ]]; do
	case $1 in
	--arch) need_arg "$@"; ARCH=$2; shift 2 ;;
	--kernel) need_arg "$@"; KERNEL_SPEC=$2; shift 2 ;;
	--kernel=*) KERNEL_SPEC=${1#*=}; shift ;;
	--env) need_arg "$@"; ENVS+=("$2"); shift 2 ;;
	--env=*) ENVS+=("${1#*=}"); shift ;;
	--add) need_arg "$@"; ADDS+=("$2"); shift 2 ;;
	--add=*) ADDS+=("${1#*=}"); shift ;;
	--modules) need_arg "$@"; IFS=, read -r -a _m <<<"$2"; MODULES+=("${_m[@]}"); shift 2 ;;
	--modules=*) IFS=, read -r -a _m <<<"${1#*=}"; MODULES+=("${_m[@]}"); shift ;;
	--workdir) need_arg "$@"; WORKDIR=$2; shift 2 ;;
	--bpf-stats) BPF_STATS=1; shift ;;
	--timeout) need_arg "$@"; TIMEOUT=$2; shift 2 ;;
	--mem) need_arg "$@"; MEM=$2; shift 2 ;;
	--smp) need_arg "$@"; SMP=$2; shift 2 ;;
	--append) need_arg "$@"; APPEND_EXTRA="$APPEND_EXTRA $2"; shift 2 ;;
	--verbose) QUIET=""; shift ;;
	--cache) need_arg "$@"; CACHE=$2; shift 2 ;;
	--log) need_arg "$@"; LOG_FILE=$2; shift 2 ;;
	--log-dir) need_arg "$@"; LOG_DIR=$2; shift 2 ;;
	--result-file) need_arg "$@"; RESULT_FILE=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) usage >&2; die "unknown argument: $1 (the binary goes after --)" ;;
	esac
done

[[ $# -ge 1 ]] || { usage >&2; die "missing BINARY after --"; }
BINARY=$1
shift
GUEST_ARGS=("$@")

[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds"
[[ $ARCH == amd64 || $ARCH == arm64 ]] || die "--arch must be amd64 or arm64, not $ARCH"
[[ $WORKDIR == /* ]] || die "--workdir must be an absolute path"
for e in "${ENVS[@]+"${ENVS[@]}"}"; do
	k=${e%%=*}
	[[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad --env '$e' (want KEY=VALUE)"
done
for a in "${ADDS[@]+"${ADDS[@]}"}"; do
	[[ $a == *:/* ]] || die "bad --add '$a' (want SRC:/absolute/guest/path)"
	[[ -e ${a%:*} ]] || die "--add source does not exist: ${a%:*}"
done

case $KERNEL_SPEC in
all) KERNELS=(5.10 6.1 6.12) ;;
*) read -r -a KERNELS <<<"${KERNEL_SPEC//,/ }" ;;
esac

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
[[ -n $LOG_DIR ]] || LOG_DIR=$CACHE/logs
if [[ -n $LOG_FILE && ${#KERNELS[@]} -gt 1 ]]; then
	die "--log only works with a single kernel; use --log-dir"
fi

# ---------------------------------------------------------------- host tools
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

apt_updated=0
apt_update_once() {
	if [[ $apt_updated -eq 0 ]]; then
		log "running apt-get update"
		as_root apt-get update -qq >&2 || log "warning: apt-get update failed"
		apt_updated=1
	fi
}

busybox_is_static() {
	[[ -x /bin/busybox ]] && file -bL /bin/busybox | grep -q 'statically linked'
}

ensure_tools() {
	local need=()
	command -v file >/dev/null || need+=(file)
	if [[ $ARCH == arm64 ]]; then
		command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
	else
		command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
	fi
	command -v cpio >/dev/null || need+=(cpio)
	command -v xz >/dev/null || need+=(xz-utils)
	command -v timeout >/dev/null || need+=(coreutils)
	# 'file' may be missing for the busybox check; install it first.
	if [[ ${#need[@]} -gt 0 ]] || ! busybox_is_static 2>/dev/null; then
		busybox_is_static 2>/dev/null || need+=(busybox-static)
		log "installing: ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		if ! as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >&2; then
			apt_update_once
			as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 ||
				die "could not install ${need[*]}"
		fi
	fi
	busybox_is_static || die "/bin/busybox is not a static binary (install busybox-static)"
}

check_binary() {
	local bin=$1 desc
	[[ -f $bin ]] || die "binary not found: $bin"
	desc=$(file -bL "$bin")
	case $ARCH in
	arm64) [[ $desc == ELF\ 64-bit*aarch64* ]] || die "$bin is not an arm64 ELF executable: $desc" ;;
	*) [[ $desc == ELF\ 64-bit*x86-64* ]] || die "$bin is not an x86-64 ELF executable: $desc" ;;
	esac
	if [[ $desc == *"dynamically linked"* || $desc == *interpreter* ]] ||
		{ command -v readelf >/dev/null && readelf -lW "$bin" 2>/dev/null | grep -q 'program interpreter'; }; then
		die "$bin is dynamically linked (has an ELF interpreter); the guest has no libc: rebuild it static, e.g. CGO_ENABLED=0 go test -c / go build"
	fi
}

# ---------------------------------------------------------------- kernels
# Kernels of other Debian suites (5.10 is bullseye's) come from the same
# registry through an apt configuration of their own under the cache, which
# leaves the host's sources alone. APT_ARGS is what apt commands of the
# series being resolved add (none for the host's suites).
APT_ARGS=()
suite_apt() {
	local suite=$1 dir=$CACHE/apt-$1
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	if [[ ! -f $dir/sources.list ]]; then
		printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' "$suite" >"$dir/sources.list"
		printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security %s-security main\n' "$suite" >>"$dir/sources.list"
	fi
	APT_ARGS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
		-o APT::Architectures::=amd64 -o APT::Architectures::=arm64)
	if [[ ! -f $dir/.updated ]]; then
		log "running apt-get update for $suite ($dir)"
		as_root apt-get "${APT_ARGS[@]}" update -qq >&2 && touch "$dir/.updated" || log "warning: apt-get update for $suite failed"
	fi
}

# pkg_candidates SERIES -> prints the matching package names known to apt,
# newest first.
pkg_candidates() {
	local re prefix=linux-image-6.
	case $1 in
	arm64/6.12) re='^linux-image-6\.12\.[0-9]+\+deb13-cloud-arm64$' prefix=linux-image-6.12 ;;
	arm64/*) return 1 ;;
	5.10) re='^linux-image-5\.10\.0-[0-9]+-cloud-amd64$' prefix=linux-image-5.10 ;;
	6.1) re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' ;;
	6.12) re='^linux-image-6\.12\.[0-9]+\+(deb[0-9]+|bpo)-cloud-amd64$' ;;
	*) return 1 ;;
	esac
	apt-cache "${APT_ARGS[@]}" pkgnames "$prefix" 2>/dev/null | grep -E "$re" | sort -V -r
}

# resolve_kernel SPEC -> sets KDIR (extracted package root), KPKG, KVER, KREL
resolve_kernel() {
	local spec=$1 pkg="" pin cand
	case $spec in
	linux-image-5.10.*) suite_apt bullseye; pkg=$spec ;;
	linux-image-*-arm64) suite_apt trixie; pkg=$spec ;;
	linux-image-*) pkg=$spec ;;
	5.10 | 6.1 | 6.12)
		APT_ARGS=()
		[[ $spec != 5.10 ]] || suite_apt bullseye
		[[ $ARCH != arm64 ]] || suite_apt trixie
		pin=CONNWATCH_VM_PKG_${spec//./_}
		pkg=${!pin:-}
		if [[ -z $pkg ]]; then
			local series=$spec
			[[ $ARCH == amd64 ]] || series=$ARCH/$spec
			cand=$(pkg_candidates "$series" || true)
			if [[ -z $cand ]]; then
				apt_update_once
				cand=$(pkg_candidates "$series" || true)
			fi
			# newest package apt can actually provide
			local p
			for p in $cand; do
				if [[ $(apt-cache "${APT_ARGS[@]}" policy "$p:$ARCH" 2>/dev/null | sed -n 's/^ *Candidate: *//p') =~ ^[0-9] ]]; then
					pkg=$p
					break
				fi
			done
		fi
		;;
	*) die "unknown kernel '$spec' (want 5.10, 6.1, 6.12, all or a linux-image-* package name)" ;;
	esac

	if [[ -z $pkg ]]; then
		# offline: newest cached kernel of this series
		local d
		d=$(find "$CACHE/kernels" -mindepth 1 -maxdepth 1 -type d -name "linux-image-${spec}[.-]*" 2>/dev/null | sort -V | tail -n 1 || true)
		[[ -n $d && -f $d/.complete ]] || die "no Debian package found for kernel $spec (apt-cache) and nothing cached"
		pkg=${d##*/}
		log "apt knows no $spec cloud kernel; using cached $pkg"
	fi

	KPKG=$pkg
	KDIR=$CACHE/kernels/$pkg
	if [[ ! -f $KDIR/.complete ]]; then
		local dl tmp deb
		mkdir -p "$CACHE/kernels"
		# apt drops privileges to _apt for downloads: use a world-writable
		# directory outside $HOME so it can write there.
		dl=$(mktemp -d "${TMPDIR:-/tmp}/connwatch-vm-dl.XXXXXX")
		WORK_DIRS+=("$dl")
		chmod 0777 "$dl"
		log "downloading $pkg"
		if ! (cd "$dl" && apt-get "${APT_ARGS[@]}" download -q "$pkg:$ARCH" >&2); then
			[[ ${#APT_ARGS[@]} -gt 0 ]] || apt_update_once
			(cd "$dl" && apt-get "${APT_ARGS[@]}" download -q "$pkg:$ARCH" >&2) || die "apt-get download $pkg:$ARCH failed"
		fi
		deb=$(ls "$dl"/*.deb)
		tmp=$(mktemp -d "$CACHE/kernels/.tmp.XXXXXX")
		WORK_DIRS+=("$tmp")
		dpkg-deb -x "$deb" "$tmp"
		dpkg-deb -f "$deb" Version >"$tmp/.complete"
		chmod 0755 "$tmp"
		rm -rf "$dl"
		[[ -f $KDIR/.complete ]] || rm -rf "$KDIR"
		# a concurrent run may have won the race; keep its copy then
		mv -T "$tmp" "$KDIR" 2>/dev/null || true
	fi
	KVER=$(cat "$KDIR/.complete")
	# trixie's packages put the modules under usr/ (merged /usr)
	MODROOT=$KDIR/lib/modules
	[[ -d $MODROOT ]] || MODROOT=$KDIR/usr/lib/modules
	KREL=$(find "$MODROOT" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)
	[[ -n $KREL && -f $KDIR/boot/vmlinuz-$KREL ]] || die "no vmlinuz in $KDIR"
}

# ---------------------------------------------------------------- modules
declare -A MOD_INDEX MOD_DONE
MOD_ORDER=()

index_modules() {
	MOD_INDEX=()
	local f n
	while IFS= read -r -d '' f; do
		n=${f##*/}
		n=${n%%.ko*}
		MOD_INDEX[${n//-/_}]=$f
	done < <(find "$MODROOT/$KREL/kernel" -name '*.ko' -print0 -o -name '*.ko.xz' -print0 -o -name '*.ko.zst' -print0)
}

mod_cat() {
	case $1 in
	*.ko.xz) xz -dc "$1" ;;
	*.ko.zst) zstd -dcq "$1" ;;
	*) cat "$1" ;;
	esac
}

# add_module NAME: depth first, dependencies before the module itself.
add_module() {
	local name=${1//-/_} f deps d
	[[ -n $name && -z ${MOD_DONE[$name]:-} ]] || return 0
	MOD_DONE[$name]=1
	f=${MOD_INDEX[$name]:-}
	if [[ -z $f ]]; then
		if grep -Eq "/${name//_/[-_]}\.ko$" "$MODROOT/$KREL/modules.builtin"; then
			log "module $name is built into $KREL"
			return 0
		fi
		die "module $name not found in $KPKG"
	fi
	deps=$(mod_cat "$f" | tr '\0' '\n' | grep -a -m1 '^depends=' | cut -d= -f2 || true)
	for d in ${deps//,/ }; do
		add_module "$d"
	done
	MOD_ORDER+=("$name")
}

# guest_busybox sets GUEST_BUSYBOX: the host's static busybox, or for arm64
# trixie's busybox-static:arm64 (at usr/bin/busybox), cached.
guest_busybox() {
	GUEST_BUSYBOX=/bin/busybox
	[[ $ARCH == arm64 ]] || return 0
	local dir=$CACHE/busybox-arm64 dl
	GUEST_BUSYBOX=$dir/usr/bin/busybox
	[[ -x $GUEST_BUSYBOX ]] && return 0
	suite_apt trixie
	dl=$(mktemp -d "${TMPDIR:-/tmp}/connwatch-vm-dl.XXXXXX")
	WORK_DIRS+=("$dl")
	chmod 0777 "$dl"
	(cd "$dl" && apt-get "${APT_ARGS[@]}" download -q busybox-static:arm64 >&2) || die "apt-get download busybox-static:arm64 failed"
	mkdir -p "$dir"
	dpkg-deb -x "$dl"/*.deb "$dir"
	[[ -x $GUEST_BUSYBOX ]] || die "busybox-static:arm64 has no usr/bin/busybox"
}

# ---------------------------------------------------------------- initramfs
sq() { # single-quote for the guest shell
	local s=${1//\'/\'\\\'\'}
	printf "'%s'" "$s"
}

build_initramfs() {
	local out=$1 root=$2 spec=$3 m a e k v applet
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,run,root,mnt,connwatch}
	cp "$GUEST_BUSYBOX" "$root/bin/busybox"
	# The host's busybox lists the applets (an arm64 one cannot run here).
	for applet in $(/bin/busybox --list); do
		[[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
	done
	cp "$BINARY" "$root/connwatch/$BIN_NAME"
	chmod 0755 "$root/connwatch/$BIN_NAME"

	printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
	printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
	: >"$root/etc/resolv.conf"

	MOD_ORDER=()
	MOD_DONE=()
	if [[ ${#MODULES[@]} -gt 0 ]]; then
		index_modules
		for m in "${MODULES[@]}"; do
			add_module "$m"
		done
		mkdir -p "$root/lib/modules/$KREL"
		for m in "${MOD_ORDER[@]+"${MOD_ORDER[@]}"}"; do
			mod_cat "${MOD_INDEX[$m]}" >"$root/lib/modules/$KREL/$m.ko"
		done
	fi

	for a in "${ADDS[@]+"${ADDS[@]}"}"; do
		mkdir -p "$root$(dirname "${a##*:}")"
		cp -a "${a%:*}" "$root${a##*:}"
	done

	{
		cat <<'EOF'
#!/bin/sh
# generated by test/vm/run.sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TMPDIR=/tmp
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mnt() {
	mkdir -p "$3"
	mount -t "$1" "$2" "$3" || echo "connwatch-vm: warning: cannot mount $1 on $3"
}
mnt proc proc /proc
mnt sysfs sysfs /sys
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /dev/shm
mnt tmpfs tmpfs /tmp
mnt tmpfs tmpfs /run
mnt bpf bpffs /sys/fs/bpf
mnt tracefs tracefs /sys/kernel/tracing
mnt debugfs debugfs /sys/kernel/debug
mnt cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up || echo "connwatch-vm: warning: cannot bring up lo"
ulimit -l unlimited 2>/dev/null
EOF
		[[ $BPF_STATS -eq 0 ]] || echo 'sysctl -w kernel.bpf_stats_enabled=1 >/dev/null || echo "connwatch-vm: warning: cannot enable bpf stats"'
		for m in "${MOD_ORDER[@]+"${MOD_ORDER[@]}"}"; do
			echo "insmod /lib/modules/$KREL/$m.ko || echo 'connwatch-vm: warning: insmod $m failed'"
		done
		echo "export CONNWATCH_VM=1 CONNWATCH_VM_KERNEL=$(sq "$KREL")"
		for e in "${ENVS[@]+"${ENVS[@]}"}"; do
			if [[ $e == *=* ]]; then
				k=${e%%=*} v=${e#*=}
			else
				k=$e v=${!e-}
			fi
			echo "export $k=$(sq "$v")"
		done
		printf 'set --'
		for a in "${GUEST_ARGS[@]+"${GUEST_ARGS[@]}"}"; do
			printf ' %s' "$(sq "$a")"
		done
		printf '\n'
		echo "mkdir -p $(sq "$WORKDIR"); cd $(sq "$WORKDIR") || echo 'connwatch-vm: warning: cannot cd to workdir'"
		echo "echo \"connwatch-vm: kernel \$(uname -r), running $(sq "/connwatch/$BIN_NAME") \$*\""
		echo "$(sq "/connwatch/$BIN_NAME") \"\$@\" </dev/null"
		cat <<EOF
rc=\$?
sync
echo
echo "$MARKER=\$rc"
poweroff -f
echo o >/proc/sysrq-trigger
sleep 5
EOF
	} >"$root/init"
	chmod 0755 "$root/init"

	(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) >"$out"
}

# ---------------------------------------------------------------- boot
run_one() {
	local spec=$1 work initrd logf start end secs qrc code lock
	# Rows of matrix.sh --jobs resolve (apt update, download, extract) one
	# at a time: the cache and apt's lists are shared.
	exec {lock}>"$CACHE/.resolve.lock"
	flock "$lock"
	resolve_kernel "$spec"
	guest_busybox
	flock -u "$lock"
	exec {lock}>&-
	work=$(mktemp -d "${TMPDIR:-/tmp}/connwatch-vm.XXXXXX")
	WORK_DIRS+=("$work")
	initrd=$work/initrd.cpio
	build_initramfs "$initrd" "$work/root" "$spec"

	if [[ -n $LOG_FILE ]]; then
		logf=$LOG_FILE
		mkdir -p "$(dirname "$logf")"
	else
		mkdir -p "$LOG_DIR"
		logf=$LOG_DIR/$spec-$ARCH-$(date +%Y%m%d-%H%M%S)-$$.log
	fi

	local cmdline="console=ttyS0 panic=-1 $QUIET$APPEND_EXTRA"
	local qemu=(qemu-system-x86_64 -accel "$ACCEL" -cpu max -m "$MEM" -smp "$SMP"
		-nographic -no-reboot -nic none
		-kernel "$KDIR/boot/vmlinuz-$KREL" -initrd "$initrd" -append "$cmdline")
	if [[ $ARCH == arm64 ]]; then
		cmdline="console=ttyAMA0 panic=-1 $QUIET$APPEND_EXTRA"
		qemu=(qemu-system-aarch64 -machine virt -accel "$ACCEL" -cpu max -m "$MEM" -smp "$SMP"
			-nographic -no-reboot -nic none
			-kernel "$KDIR/boot/vmlinuz-$KREL" -initrd "$initrd" -append "$cmdline")
	fi
	log "kernel $spec ($ARCH): $KPKG $KVER ($KREL), initramfs $(du -h "$initrd" | cut -f1), timeout ${TIMEOUT}s, log $logf"
	[[ ${#MOD_ORDER[@]} -eq 0 ]] || log "modules: ${MOD_ORDER[*]}"

	start=$(date +%s.%N)
	set +e
	timeout -k 10 "$TIMEOUT" "${qemu[@]}" </dev/null 2>&1 | tee "$logf"
	qrc=${PIPESTATUS[0]}
	set -e
	end=$(date +%s.%N)
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

	code=$(tr -d '\r' <"$logf" | grep -a -o "$MARKER=[0-9]\+" | tail -n 1 | cut -d= -f2 || true)
	if [[ -z $code ]]; then
		if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
			log "kernel $spec: no $MARKER line: timed out after ${TIMEOUT}s"
		else
			log "kernel $spec: no $MARKER line: the guest stopped without reporting (qemu exit $qrc; kernel panic, /init failure or QEMU error?) - see $logf"
		fi
		code=125
	fi
	log "kernel $spec: exit $code after ${secs}s ($KPKG $KVER)"
	if [[ -n $RESULT_FILE ]]; then
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$spec" "$KPKG" "$KVER" "$code" "$secs" "$logf" "$ARCH" >>"$RESULT_FILE"
	fi
	RUN_CODE=$code
}

WORK_DIRS=()
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() { [[ ${#WORK_DIRS[@]} -eq 0 ]] || rm -rf "${WORK_DIRS[@]}"; }
trap cleanup EXIT

ensure_tools
check_binary "$BINARY"
BIN_NAME=${BINARY##*/}

final=0
for k in "${KERNELS[@]}"; do
	RUN_CODE=125
	run_one "$k"
	if [[ $final -eq 0 && $RUN_CODE -ne 0 ]]; then
		final=$RUN_CODE
	fi
done
exit "$final"
