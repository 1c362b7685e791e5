#!/bin/bash
# ownerbench.sh: what process attribution costs chains-sensor on a live flood that belongs to a
# local process, so that its lookups hit (loadbench.sh's flood is no process's).
#
# Makes a namespace pair with a veth (ob-a-PID/oba-PID <-> ob-b-PID/obb-PID: its own names, so
# that it runs beside loadbench.sh or another copy of itself), and in A a process owning the
# traffic: python3 with a UDP socket bound to 10.97.0.1:9 that never reads (ingress: trafgen in
# B floods that port from varying source ports; xdp_sensor finds the bound port), and python3
# sending small datagrams from 10.97.0.1:4000 as fast as it can (egress: tc_sensor finds the
# socket's cookie). Each direction is watched for DURATION seconds three times: attribution on,
# --no-processes, and on with --comm python3, whose "0 filtered out" shows that every packet of
# the flood was named. It prints each run's offered packets, the sensor's counters, the loss and
# the sensor's CPU time (user + system, /proc/PID/stat). Root only. It removes what it makes.
#
#   sudo scripts/ownerbench.sh                 # DURATION=4 RATE=200000pps PAYLOAD=18
#   sudo RATE= scripts/ownerbench.sh           # ingress at trafgen's full speed
#
# Environment: DURATION seconds per run; RATE for trafgen --rate (empty: as fast as it can);
# PAYLOAD UDP payload bytes; SENSOR the chains-sensor binary (default: go build into a temp
# dir); XDP_MODE generic (default, as loadbench.sh) or native; DIRS "in out" (default).
set -euo pipefail

DURATION=${DURATION:-4}
RATE=${RATE-200000pps}
PAYLOAD=${PAYLOAD:-18}
XDP_MODE=${XDP_MODE:-generic}
DIRS=${DIRS:-in out}
PY=${PY:-/usr/bin/python3}
A=ob-a-$$
B=ob-b-$$
IA=oba-$$
IB=obb-$$

if [ "$(id -u)" != 0 ]; then
	echo "$0: needs root (network namespaces, BPF, trafgen): run with sudo" >&2
	exit 1
fi
for tool in ip ss trafgen timeout "$PY"; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (scripts/provision.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "$0: line $LINENO: exit status $?" >&2' ERR

if [ -z "${SENSOR:-}" ]; then
	SENSOR=$work/chains-sensor
	(cd "$(dirname "$0")/.." && go build -o "$SENSOR" ./cmd/chains-sensor)
fi

ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add "$IA" type veth peer name "$IB" netns "$B"
ip -n "$A" addr add 10.97.0.1/24 dev "$IA"
ip -n "$B" addr add 10.97.0.2/24 dev "$IB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$IA" up
ip -n "$B" link set "$IB" up

mac() { ip -n "$1" -br link show dev "$2" | awk '{print $3}'; }
hexmac() { echo "$1" | sed 's/^/0x/; s/:/, 0x/g'; }
mac_a=$(mac "$A" "$IA")
mac_b=$(mac "$B" "$IB")
# B's neighbour entry for A, so that A's egress flood goes out without waiting on ARP.
ip -n "$A" neigh replace 10.97.0.2 lladdr "$mac_b" dev "$IA"

# The ingress flood, as loadbench.sh's but to 10.97.0.1 port 9, where A's process is bound.
iplen=$((20 + 8 + PAYLOAD))
cat >"$work/flood.cfg" <<CFG
{
  $(hexmac "$mac_a"), $(hexmac "$mac_b"), c16(0x0800),
  0x45, 0x00, c16($iplen), drnd(2), c16(0x4000), 64, 17, csumip(14, 33),
  10, 97, 0, 2, 10, 97, 0, 1,
  0x30, dinc(0, 255), c16(9), c16($((8 + PAYLOAD))), c16(0),
  fill(0x41, $PAYLOAD),
}
CFG

# receiver: the owner of the ingress flood, bound after the sensor attached (so that post_bind
# names it) and never reading (what overflows its buffer the kernel drops after both hooks).
receiver() {
	ip netns exec "$A" "$PY" -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.97.0.1", 9))
time.sleep(3600)' &
	rcv_pid=$!
	pids+=("$rcv_pid")
	for _ in $(seq 50); do ip netns exec "$A" ss -Hlun 'sport = :9' | grep -q . && return; sleep 0.1; done
	echo "$0: the receiver did not bind" >&2
	exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_s() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }
pct() { awk -v l="$1" -v n="$2" 'BEGIN { if (n == 0) print "n/a"; else printf "%.3f%%", 100 * l / n }'; }

# flood DIR: DURATION seconds of traffic in that direction; sets offered.
flood() {
	if [ "$1" = in ]; then
		ip netns exec "$B" timeout -k 2 -s INT "$DURATION" trafgen --dev "$IB" --conf "$work/flood.cfg" \
			--cpus 1 ${RATE:+--rate "$RATE"} -C -Q >"$work/trafgen.log" 2>&1 || true
		offered=$(tr -d '\r' <"$work/trafgen.log" | awk '/packets outgoing/ {n += $1} END {print n + 0}')
	else
		offered=$(ip netns exec "$A" "$PY" -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.97.0.1", 4000))
d, to, n = b"A" * int(sys.argv[2]), ("10.97.0.2", 9), 0
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.sendto(d, to)
            n += 1
        except OSError:
            pass
print(n)' "$DURATION" "$PAYLOAD")
	fi
}

printf '%-4s %-22s %10s %10s %10s %10s %10s %9s %7s\n' dir attribution offered seen filtered recorded lost loss "cpu s"
for dir in $DIRS; do
	for mode in on off comm; do
		args=()
		case $mode in
		off) args=(--no-processes) ;;
		comm) args=(--comm python3) ;;
		esac
		ip netns exec "$A" "$SENSOR" attach -n --direction "$dir" --xdp-mode "$XDP_MODE" "${args[@]}" "$IA" >/dev/null 2>"$work/sensor.err" &
		sensor_pid=$!
		pids+=("$sensor_pid")
		for _ in $(seq 100); do grep -q "attached to" "$work/sensor.err" 2>/dev/null && break; sleep 0.1; done
		grep -q "attached to" "$work/sensor.err" || { cat "$work/sensor.err" >&2; exit 1; }
		[ "$dir" = in ] && receiver
		c0=$(cpu_ticks "$sensor_pid")
		flood "$dir"
		c=$(($(cpu_ticks "$sensor_pid") - c0))
		sleep 0.5
		if [ "$dir" = in ]; then kill "$rcv_pid"; wait "$rcv_pid" 2>/dev/null || true; fi
		kill -INT "$sensor_pid"
		wait "$sensor_pid" || { echo "chains-sensor failed:" >&2; cat "$work/sensor.err" >&2; exit 1; }
		read -r seen filtered rec lost < <(tail -n1 "$work/sensor.err" | awk -F', ' '{
			for (i = 1; i <= NF; i++) { split($i, w, " "); v[w[2]] = w[1] }
			print v["packets"], v["filtered"] + 0, v["recorded"], v["lost"] }')
		label=$mode
		[ "$mode" = on ] && label="on"
		[ "$mode" = off ] && label="off (--no-processes)"
		[ "$mode" = comm ] && label="on, --comm python3"
		printf '%-4s %-22s %10s %10s %10s %10s %10s %9s %7s\n' "$dir" "$label" "$offered" "$seen" "$filtered" "$rec" "$lost" "$(pct "$lost" "$seen")" "$(cpu_s "$c")"
		grep '^processes:' "$work/sensor.err" | sed 's/^/     /' || true
	done
done
echo "$(nproc) CPUs; ingress: trafgen --cpus 1${RATE:+ --rate $RATE}, $((14 + iplen))-byte frames; egress: one python3 sender at full speed; ${DURATION}s a run; xdp-mode $XDP_MODE"
