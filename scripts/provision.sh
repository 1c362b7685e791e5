#!/usr/bin/env bash
# What a fresh Debian 12+ or Ubuntu 22.04+ machine needs to build, generate and test
# chains-sensor. Used by the Vagrantfile and by CI (.ci/run). Run as root (or with sudo).
set -euo pipefail

# Go 1.21+ fetches the toolchain go.mod asks for by itself (GOTOOLCHAIN=auto).
GO_MIN=1.21
CLANG=${CLANG:-clang-19}
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
	echo "provision.sh installs packages: run it as root (sudo bash scripts/provision.sh)" >&2
	exit 1
fi

# tshark asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	"$CLANG" "llvm-${CLANG#clang-}" libbpf-dev linux-libc-dev bpftool gcc libc6-dev libpcap-dev \
	make git ca-certificates iproute2 iputils-ping procps util-linux openssl \
	tcpdump tshark netsniff-ng dnsmasq-base nginx-light curl dnsutils >/dev/null

# Debian's dnsmasq/nginx services are not wanted: the tests start their own, in namespaces.
systemctl disable --now nginx >/dev/null 2>&1 || true

have_go() {
	command -v go >/dev/null 2>&1 || return 1
	local v
	v=$(go env GOVERSION | sed 's/^go//')
	[ "$(printf '%s\n%s\n' "$GO_MIN" "$v" | sort -V | head -1)" = "$GO_MIN" ]
}
if ! have_go && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
if ! have_go; then
	apt-get install -y -qq --no-install-recommends golang-go >/dev/null || true
fi
if ! have_go; then
	echo "chains-sensor needs Go $GO_MIN or newer; install it from https://go.dev/doc/install and put it on PATH" >&2
	exit 1
fi

# The kernel must have BPF ring buffers (5.8+) and BTF; say so early rather than in a test.
if [ ! -e /sys/kernel/btf/vmlinux ]; then
	echo "warning: this kernel has no BTF (/sys/kernel/btf/vmlinux): the sensor will not load" >&2
fi
echo "provisioned: $($CLANG --version | head -1), $(go version)"
