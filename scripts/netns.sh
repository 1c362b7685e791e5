#!/bin/sh
# netns.sh: a pair of network namespaces joined by a veth, to try chains-sensor without touching
# a real interface.
#
#   sudo scripts/netns.sh up      # make namespaces cs-a and cs-b, veth cs-a0 <-> cs-b0
#   sudo ip netns exec cs-a chains-sensor attach cs-a0          # terminal 1
#   sudo ip netns exec cs-b ping -c3 10.99.0.1                   # terminal 2 (or ping -6 fd99::1)
#   sudo scripts/netns.sh down    # remove both namespaces (and with them the veth)
#
# Addresses: cs-a0 10.99.0.1/24 fd99::1/64, cs-b0 10.99.0.2/24 fd99::2/64. PREFIX=xy changes the
# names (xy-a, xy-b, xy-a0, xy-b0); NET4 (default 10.99.0) and NET6 (default fd99:) the addresses.
set -eu

PREFIX=${PREFIX:-cs}
NET4=${NET4:-10.99.0}
NET6=${NET6:-fd99:}
A=$PREFIX-a
B=$PREFIX-b

usage() {
	echo "usage: $0 up|down|status" >&2
	exit 2
}

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$0: needs root to make network namespaces (run with sudo)" >&2
		exit 1
	fi
}

up() {
	need_root
	for ns in "$A" "$B"; do
		if ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
			echo "$0: namespace $ns exists already; run '$0 down' first" >&2
			exit 1
		fi
	done
	ip netns add "$A"
	ip netns add "$B"
	# From here on, undo everything if a step fails.
	trap 'down >/dev/null 2>&1' EXIT
	ip -n "$A" link add "$A"0 type veth peer name "$B"0 netns "$B"
	ip -n "$A" addr add "$NET4.1/24" dev "$A"0
	ip -n "$B" addr add "$NET4.2/24" dev "$B"0
	ip -n "$A" addr add "${NET6}:1/64" dev "$A"0 nodad
	ip -n "$B" addr add "${NET6}:2/64" dev "$B"0 nodad
	for ns in "$A" "$B"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$A" link set "$A"0 up
	ip -n "$B" link set "$B"0 up
	trap - EXIT
	cat <<MSG
namespaces $A and $B are up:
  $A: ${A}0 $NET4.1/24 ${NET6}:1/64
  $B: ${B}0 $NET4.2/24 ${NET6}:2/64
try:
  sudo ip netns exec $A chains-sensor attach -n ${A}0
  sudo ip netns exec $B ping -c3 $NET4.1
remove with: sudo $0 down
MSG
}

down() {
	need_root
	for ns in "$A" "$B"; do
		ip netns del "$ns" 2>/dev/null || true
	done
}

status() {
	for ns in "$A" "$B"; do
		echo "== $ns"
		ip -n "$ns" -br addr 2>/dev/null || echo "(absent)"
	done
}

[ $# -eq 1 ] || usage
case "$1" in
up) up ;;
down) down ;;
status) status ;;
*) usage ;;
esac
