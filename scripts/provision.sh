#!/usr/bin/env bash
# What a fresh Debian 12+ or Ubuntu 24.04+ machine needs to build, generate and test
# chains-sensor. Used by the README's two commands, the Vagrantfile and CI (.ci/run).
#
#   bash scripts/provision.sh           # installs what is missing; nothing to do: no root needed
#   bash scripts/provision.sh --force   # runs apt-get even when everything is there
#
# Installing needs root: as root it installs directly; as another user it runs itself again
# through sudo; where neither is possible it names what is missing and how to get root.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Go 1.21+ fetches the toolchain go.mod asks for by itself (GOTOOLCHAIN=auto).
GO_MIN=1.21
CLANG=${CLANG:-clang-19}
export DEBIAN_FRONTEND=noninteractive
# gcc, libc6-dev and libpcap-dev: cgo builds the libpcap calls that compile filter expressions.
# nats-server: the fleet's tests run JetStream clusters; prometheus: promtool checks --metrics.
PACKAGES=("$CLANG" "llvm-${CLANG#clang-}" libbpf-dev linux-libc-dev bpftool gcc libc6-dev libpcap-dev
	make git ca-certificates iproute2 iputils-ping procps util-linux openssl
	tcpdump tshark netsniff-ng dnsmasq-base nginx-light curl dnsutils
	nats-server prometheus)
force=false
[ "${1:-}" = --force ] && force=true

# have_go: a go command of GO_MIN or newer is on PATH (its own version: GOTOOLCHAIN=local, from
# outside the module, so that asking fetches nothing).
have_go() {
	command -v go >/dev/null 2>&1 || return 1
	local v
	v=$(cd / && GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//') || return 1
	[ -n "$v" ] && [ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -1)" = "$GO_MIN" ]
}
# Run again through sudo, the go of the user who asked comes along (CHAINS_GO); Go's own
# installer puts go in /usr/local/go/bin, which sudo's PATH leaves out.
if [ -n "${CHAINS_GO:-}" ] && [ -x "$CHAINS_GO" ]; then
	export PATH=$(dirname "$CHAINS_GO"):$PATH
fi
if ! have_go && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
have_go || missing+=("Go $GO_MIN or newer")

if [ ${#missing[@]} -eq 0 ] && ! $force; then
	echo "provisioned already: $($CLANG --version | head -1), $(cd / && GOTOOLCHAIN=local go version)"
	exit 0
fi

if ! is_root; then
	if [ ${#missing[@]} -gt 0 ]; then
		echo "provision.sh: missing: ${missing[*]}" >&2
	fi
	if can_be_root; then
		exec sudo -H env CHAINS_GO="$(command -v go || true)" bash scripts/provision.sh "$@"
	fi
	no_root_hint "installing packages"
	exit 1
fi

# tshark asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null

# Debian's nginx, prometheus and nats-server services are not wanted: the tests start their
# own (in namespaces, or on loopback ports they choose); promtool is all prometheus is for.
systemctl disable --now nginx prometheus prometheus-node-exporter nats-server >/dev/null 2>&1 || true

if ! have_go; then
	# Debian 12's own Go is 1.19; its backports have 1.23, which fetches the toolchain go.mod
	# names. Ubuntu 24.04's is 1.22.
	. /etc/os-release
	if [ "${VERSION_CODENAME:-}" = bookworm ]; then
		echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends -t bookworm-backports golang-go >/dev/null || true
	else
		apt-get install -y -qq --no-install-recommends golang-go >/dev/null || true
	fi
fi
if ! have_go; then
	echo "chains-sensor needs Go $GO_MIN or newer; install it from https://go.dev/doc/install and put it on PATH" >&2
	exit 1
fi

# The kernel must have BPF ring buffers (5.8+) and BTF; say so early rather than in a test.
if [ ! -e /sys/kernel/btf/vmlinux ]; then
	echo "warning: this kernel has no BTF (/sys/kernel/btf/vmlinux): the sensor will not load" >&2
fi
echo "provisioned: $($CLANG --version | head -1), $(cd / && GOTOOLCHAIN=local go version)"
