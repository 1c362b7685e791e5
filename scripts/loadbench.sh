#!/bin/bash
# loadbench.sh: how chains-sensor and tcpdump keep up with a flood (make bench).
#
# Makes a namespace pair with a veth (lb-a/lb-a0 <-> lb-b/lb-b0), floods lb-a0's ingress from
# lb-b with trafgen at full speed for DURATION seconds, once while `chains-sensor attach -n`
# watches lb-a0 printing to /dev/null, then once while `tcpdump -n` does, and prints offered
# packets/s and each one's loss side by side. Root only. Everything it makes it removes.
#
#   sudo scripts/loadbench.sh            # DURATION=5 RATE= (empty: full speed) CPUS=1
#   sudo RATE=200000pps scripts/loadbench.sh
#
# Environment: DURATION seconds per phase; RATE for trafgen --rate (empty: as fast as it can);
# CPUS trafgen processes; SENSOR the chains-sensor binary (default: go build into a temp dir);
# SENSOR_ARGS extra attach flags (e.g. --wakeup-bytes 65536); PAYLOAD UDP payload bytes (18);
# FILTER a pcap-filter expression given to both tools (e.g. 'not udp port 9' rejects the flood:
# the sensor's filter runs in xdp_sensor, tcpdump's in its socket's classic BPF);
# XDP_MODE generic (default: frames reach xdp_sensor by the same path as tcpdump's socket, so the
# two see the same offered load) or native (veth's own XDP path, with a 256-frame queue per
# receive queue in front of the hook: what overflows it is dropped before any program sees it);
# WRITE=0 leaves out the third phase, where `attach -w` and `tcpdump -w` write the same flood
# at the same time to files on one tmpfs (TMPFS_SIZE, 4g), with WRITE_ARGS for the sensor
# (e.g. --no-comments, -s 128).
set -euo pipefail

DURATION=${DURATION:-5}
RATE=${RATE:-}
CPUS=${CPUS:-1}
PAYLOAD=${PAYLOAD:-18}
SENSOR_ARGS=${SENSOR_ARGS:-}
FILTER=${FILTER:-}
XDP_MODE=${XDP_MODE:-generic}
WRITE=${WRITE:-1}
WRITE_ARGS=${WRITE_ARGS:-}
TMPFS_SIZE=${TMPFS_SIZE:-4g}
A=lb-a
B=lb-b

if [ "$(id -u)" != 0 ]; then
	echo "$0: needs root (network namespaces, BPF, trafgen, tcpdump): run with sudo" >&2
	exit 1
fi
for tool in ip trafgen tcpdump timeout; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (scripts/provision.sh installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
	[ -n "${sensor_pid:-}" ] && kill -INT "$sensor_pid" 2>/dev/null || true
	[ -n "${td_pid:-}" ] && kill -INT "$td_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	[ -n "${w_sensor_pid:-}" ] && kill -INT "$w_sensor_pid" 2>/dev/null || true
	[ -n "${w_td_pid:-}" ] && kill -INT "$w_td_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	mountpoint -q "$work/tmpfs" 2>/dev/null && umount "$work/tmpfs"
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${SENSOR:-}" ]; then
	SENSOR=$work/chains-sensor
	(cd "$(dirname "$0")/.." && go build -o "$SENSOR" ./cmd/chains-sensor)
fi

ip netns del "$A" 2>/dev/null || true
ip netns del "$B" 2>/dev/null || true
ip netns add "$A"
ip netns add "$B"
ip -n "$A" link add "$A"0 type veth peer name "$B"0 netns "$B"
ip -n "$A" addr add 10.98.0.1/24 dev "$A"0
ip -n "$B" addr add 10.98.0.2/24 dev "$B"0
ip -n "$A" link set lo up
ip -n "$B" link set lo up
ip -n "$A" link set "$A"0 up
ip -n "$B" link set "$B"0 up

mac() { ip -n "$1" -br link show dev "$2" | awk '{print $3}'; }
hexmac() { echo "$1" | sed 's/^/0x/; s/:/, 0x/g'; }
mac_a=$(mac "$A" "$A"0)
mac_b=$(mac "$B" "$B"0)

# UDP from 10.98.0.2 to 10.98.0.1 port 9 (discard; nothing listens), source port varying so the
# packets are not all one flow; frames of 14+20+8+PAYLOAD bytes.
iplen=$((20 + 8 + PAYLOAD))
cat >"$work/flood.cfg" <<CFG
{
  $(hexmac "$mac_a"), $(hexmac "$mac_b"), c16(0x0800),
  0x45, 0x00, c16($iplen), drnd(2), c16(0x4000), 64, 17, csumip(14, 33),
  10, 98, 0, 2, 10, 98, 0, 1,
  0x30, dinc(0, 255), c16(9), c16($((8 + PAYLOAD))), c16(0),
  fill(0x41, $PAYLOAD),
}
CFG

tx_packets() { ip netns exec "$B" cat /sys/class/net/"$B"0/statistics/tx_packets; }

# flood: trafgen for DURATION seconds; sets offered (the frames trafgen sent, by its own count,
# else by lb-b0's transmit counter) and pps.
flood() {
	local before after
	before=$(tx_packets)
	ip netns exec "$B" timeout -k 2 -s INT "$DURATION" trafgen --dev "$B"0 --conf "$work/flood.cfg" \
		--cpus "$CPUS" ${RATE:+--rate "$RATE"} -C -Q >"$work/trafgen.log" 2>&1 || true
	after=$(tx_packets)
	offered=$(tr -d '\r' <"$work/trafgen.log" | awk '/packets outgoing/ {n += $1} END {print n + 0}')
	if [ "$offered" = 0 ]; then
		offered=$((after - before))
	fi
	pps=$((offered / DURATION))
}

# cpu_ticks PID: user + system time the process has used, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_s() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'; }

# --- chains-sensor -----------------------------------------------------------------------
ip netns exec "$A" "$SENSOR" attach -n --direction in --xdp-mode "$XDP_MODE" $SENSOR_ARGS ${FILTER:+--filter "$FILTER"} "$A"0 >/dev/null 2>"$work/sensor.err" &
sensor_pid=$!
for _ in $(seq 100); do grep -q "attached to" "$work/sensor.err" 2>/dev/null && break; sleep 0.1; done
grep -q "attached to" "$work/sensor.err" || { cat "$work/sensor.err" >&2; exit 1; }
# Independently of the sensor's own count of wake-ups: every system call of the whole process
# that can sleep (epoll waits of the ring and the Go runtime, futexes), counted by perf.
if command -v perf >/dev/null; then
	perf stat -x, -e syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex \
		-p "$sensor_pid" -o "$work/perf.txt" -- sleep "$DURATION" >/dev/null 2>&1 &
	perf_pid=$!
fi
s_cpu0=$(cpu_ticks "$sensor_pid")
flood
s_cpu=$(($(cpu_ticks "$sensor_pid") - s_cpu0))
sensor_offered=$offered sensor_pps=$pps
if [ -n "${perf_pid:-}" ]; then
	wait "$perf_pid" || true
	perf_pid=
	s_sleeps=$(awk -F, '/syscalls/ {n += $1} END {print n + 0}' "$work/perf.txt")
fi
sleep 0.5
kill -INT "$sensor_pid"
wait "$sensor_pid" || { echo "chains-sensor failed:" >&2; cat "$work/sensor.err" >&2; exit 1; }
sensor_pid=
# `N packets seen, M recorded, L lost`, or with a filter `N packets seen, F filtered out, M recorded, L lost`.
read -r s_seen s_filtered s_rec s_lost < <(tail -n1 "$work/sensor.err" | awk -F', ' '{
	f = 0; for (i = 1; i <= NF; i++) { split($i, w, " "); v[w[2]] = w[1] }
	print v["packets"], v["filtered"] + 0, v["recorded"], v["lost"] }')
s_wake=$(grep '^user space:' "$work/sensor.err" | sed 's/.*; //')

# --- tcpdump -----------------------------------------------------------------------------
ip netns exec "$A" tcpdump -n -i "$A"0 -Q in ${FILTER:+"$FILTER"} >/dev/null 2>"$work/tcpdump.err" &
td_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
td_cpu0=$(cpu_ticks "$td_pid")
flood
td_cpu=$(($(cpu_ticks "$td_pid") - td_cpu0))
td_offered=$offered td_pps=$pps
sleep 0.5
kill -INT "$td_pid"
wait "$td_pid" || true
td_pid=
td_captured=$(awk '/packets captured/ {print $1}' "$work/tcpdump.err")
td_received=$(awk '/received by filter/ {print $1}' "$work/tcpdump.err")
td_dropped=$(awk '/dropped by kernel/ {print $1}' "$work/tcpdump.err")
# What tcpdump never got: dropped by the kernel, plus what reached the interface but not it.
# With a filter, its socket counts only what the filter passed ("received by filter"): the rest
# of what was offered is filtered out, and the loss is what the kernel dropped.
td_rejected=0
if [ -n "$FILTER" ]; then
	td_rejected=$((td_offered > td_received ? td_offered - td_received : 0))
	td_lost=$td_dropped
else
	td_lost=$((td_offered > td_captured ? td_offered - td_captured : 0))
fi

pct() { awk -v l="$1" -v n="$2" 'BEGIN { if (n == 0) print "n/a"; else printf "%.3f%%", 100 * l / n }'; }
echo
echo "flood: UDP $((14 + iplen))-byte frames into lb-a0 for ${DURATION}s per tool, trafgen --cpus $CPUS${RATE:+ --rate $RATE}; $(nproc) CPUs${FILTER:+; filter '$FILTER'}"
printf '%-14s %12s %12s %12s %12s %12s %10s %8s\n' tool "offered/s" offered "filtered" "recorded" lost "loss" "cpu s"
printf '%-14s %12s %12s %12s %12s %12s %10s %8s\n' chains-sensor "$sensor_pps" "$sensor_offered" "$s_filtered" "$s_rec" "$s_lost" "$(pct "$s_lost" "$s_seen")" "$(cpu_s "$s_cpu")"
printf '%-14s %12s %12s %12s %12s %12s %10s %8s\n' "tcpdump -n" "$td_pps" "$td_offered" "$td_rejected" "$td_captured" "$td_lost" "$(pct "$td_lost" "$td_offered")" "$(cpu_s "$td_cpu")"
echo
echo "chains-sensor: $s_seen packets seen by xdp_sensor ($sensor_offered sent by trafgen), $s_wake"
if [ -n "${s_sleeps:-}" ]; then
	echo "chains-sensor: $s_sleeps epoll_wait/epoll_pwait/futex calls in the whole process during the flood (perf): $(awk -v r="$s_rec" -v s="$s_sleeps" 'BEGIN { if (s) printf "%.0f", r / s; else print "inf" }') records per call"
fi
echo "tcpdump: $td_received received by filter, $td_dropped dropped by kernel"
echo "chains-sensor's own account:"
sed 's/^/  /' "$work/sensor.err"

# --- both writing the same flood to one tmpfs ----------------------------------------------
[ "$WRITE" = 1 ] || exit 0
mkdir -p "$work/tmpfs"
mount -t tmpfs -o size="$TMPFS_SIZE" lb-pcapng "$work/tmpfs"
ip netns exec "$A" "$SENSOR" attach -n -q --direction in --xdp-mode "$XDP_MODE" $SENSOR_ARGS $WRITE_ARGS \
	${FILTER:+--filter "$FILTER"} -w "$work/tmpfs/sensor.pcapng" "$A"0 >/dev/null 2>"$work/wsensor.err" &
w_sensor_pid=$!
ip netns exec "$A" tcpdump -n -i "$A"0 -Q in -w "$work/tmpfs/tcpdump.pcap" ${FILTER:+"$FILTER"} 2>"$work/wtcpdump.err" &
w_td_pid=$!
for _ in $(seq 100); do grep -q "attached to" "$work/wsensor.err" 2>/dev/null && grep -q "listening on" "$work/wtcpdump.err" 2>/dev/null && break; sleep 0.1; done
grep -q "attached to" "$work/wsensor.err" || { cat "$work/wsensor.err" >&2; exit 1; }
ws_cpu0=$(cpu_ticks "$w_sensor_pid")
wt_cpu0=$(cpu_ticks "$w_td_pid")
flood
ws_cpu=$(($(cpu_ticks "$w_sensor_pid") - ws_cpu0))
wt_cpu=$(($(cpu_ticks "$w_td_pid") - wt_cpu0))
sleep 0.5
kill -INT "$w_sensor_pid" "$w_td_pid"
wait "$w_sensor_pid" || { echo "chains-sensor -w failed:" >&2; cat "$work/wsensor.err" >&2; exit 1; }
wait "$w_td_pid" || true
w_sensor_pid= w_td_pid=
read -r ws_seen ws_filtered ws_rec ws_lost < <(tail -n1 "$work/wsensor.err" | awk -F', ' '{
	for (i = 1; i <= NF; i++) { split($i, w, " "); v[w[2]] = w[1] }
	print v["packets"], v["filtered"] + 0, v["recorded"], v["lost"] }')
wt_captured=$(awk '/packets captured/ {print $1}' "$work/wtcpdump.err")
wt_dropped=$(awk '/dropped by kernel/ {print $1}' "$work/wtcpdump.err")
wt_lost=$((offered > wt_captured ? offered - wt_captured : 0))
[ -n "$FILTER" ] && wt_lost=$wt_dropped
ws_bytes=$(stat -c %s "$work/tmpfs/sensor.pcapng")
wt_bytes=$(stat -c %s "$work/tmpfs/tcpdump.pcap")
mbps() { awk -v b="$1" -v d="$DURATION" 'BEGIN { printf "%.1f", b / d / 1e6 }'; }
echo
echo "writing: both at once, the same flood (${pps} frames/s offered, $offered in all) to one tmpfs${WRITE_ARGS:+; sensor $WRITE_ARGS}"
printf '%-22s %12s %12s %10s %12s %10s %8s\n' tool recorded lost loss "file bytes" "MB/s" "cpu s"
printf '%-22s %12s %12s %10s %12s %10s %8s\n' "chains-sensor -w" "$ws_rec" "$ws_lost" "$(pct "$ws_lost" "$ws_seen")" "$ws_bytes" "$(mbps "$ws_bytes")" "$(cpu_s "$ws_cpu")"
printf '%-22s %12s %12s %10s %12s %10s %8s\n' "tcpdump -w" "$wt_captured" "$wt_lost" "$(pct "$wt_lost" "$offered")" "$wt_bytes" "$(mbps "$wt_bytes")" "$(cpu_s "$wt_cpu")"
echo "chains-sensor -w's own account:"
sed 's/^/  /' "$work/wsensor.err"
echo "tcpdump -w: $(tr '\n' ' ' <"$work/wtcpdump.err")"
