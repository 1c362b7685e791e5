#!/usr/bin/env python3
"""The application layer's figures against tshark (issue 9): over every capture under a folder,
the HTTP requests tshark decodes whose host and user agent urlwatch reports for the same
connection, the TLS ClientHellos (over TCP) whose SNI it reports, with a JA4, and the QUIC
ClientHellos tshark decrypts that urlwatch reports.

    python3 scripts/appfigures.py ./chains-sensor testdata/pcaps [--kernel]

Each finding is matched by its connection's addresses and ports and its value (several
requests on one connection count as many as both sides have). Malformed captures are left out.
"""
import collections
import json
import os
import subprocess
import sys

TSHARK_FIELDS = ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
                 "tcp.dstport", "udp.srcport", "udp.dstport", "http.request", "http.host",
                 "http.user_agent", "tls.handshake.type", "tls.handshake.extensions_server_name"]


def tshark(path):
    args = ["tshark", "-r", path, "-o", "tcp.reassemble_out_of_order:TRUE", "-T", "fields",
            "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=\x1f"]
    for f in TSHARK_FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    found = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        col = dict(zip(TSHARK_FIELDS, [c.split("\x1f") if c else [] for c in line.split("\t")]))
        protos = (col["frame.protocols"] or [""])[0].split(":")
        # The innermost IP header's addresses, as the sensor reports a tunnelled packet.
        inner6 = "ipv6" in protos and ("ip" not in protos or
                                       len(protos) - protos[::-1].index("ipv6") > len(protos) - protos[::-1].index("ip"))
        src = ((col["ipv6.src"] if inner6 else col["ip.src"]) or [""])[-1]
        dst = ((col["ipv6.dst"] if inner6 else col["ip.dst"]) or [""])[-1]
        if col["tcp.srcport"]:
            conn = (src, col["tcp.srcport"][-1], dst, col["tcp.dstport"][-1])
        elif col["udp.srcport"]:
            conn = (src, col["udp.srcport"][-1], dst, col["udp.dstport"][-1])
        else:
            continue
        for i, r in enumerate(col["http.request"]):
            host = col["http.host"][i] if i < len(col["http.host"]) else ""
            ua = col["http.user_agent"][i] if i < len(col["http.user_agent"]) else ""
            found["http"][conn] += 1
            if host:
                found["host"][conn + (host,)] += 1
            if ua:
                found["ua"][conn + (ua,)] += 1
        hellos = [t for t in col["tls.handshake.type"] if t == "1"]
        snis = col["tls.handshake.extensions_server_name"]
        kind = "quic" if "quic" in protos else "tls"
        for i, _ in enumerate(hellos):
            found[kind][conn + ((snis[i] if i < len(snis) else ""),)] += 1
    return found


def sensor(binary, path, kernel):
    args = [binary, "read", "-n", "-o", "json", "--view", "urlwatch", path]
    if kernel:
        args.insert(2, "--kernel")
    out = subprocess.run(args, capture_output=True, text=True).stdout
    found = collections.defaultdict(collections.Counter)
    for line in out.splitlines():
        m = json.loads(line)
        conn = (m.get("src", ""), str(m.get("sport", "")), m.get("dst", ""), str(m.get("dport", "")))
        if m["type"] == "http" and "method" in m:
            if m.get("host"):
                found["host"][conn + (m["host"],)] += 1
            if m.get("user_agent"):
                found["ua"][conn + (m["user_agent"],)] += 1
        elif m["type"] in ("tls", "quic") and m.get("hello") == "client":
            key = conn + (m.get("sni", ""),)
            found[m["type"]][key] += 1
            if m.get("ja4"):
                found[m["type"] + "_ja4"][key] += 1
    return found


def main():
    binary, root = sys.argv[1], sys.argv[2]
    kernel = "--kernel" in sys.argv[3:]
    want, got = collections.Counter(), collections.Counter()
    for d, _, files in sorted(os.walk(root)):
        if "malformed" in d:
            continue
        for f in sorted(files):
            if not (f.endswith(".pcap") or f.endswith(".pcapng")):
                continue
            path = os.path.join(d, f)
            t, s = tshark(path), sensor(binary, path, kernel)
            for kind, skind in [("host", "host"), ("ua", "ua"), ("tls", "tls"), ("tls", "tls_ja4"),
                                ("quic", "quic"), ("quic", "quic_ja4")]:
                for key, n in t[kind].items():
                    want[skind] += n
                    got[skind] += min(n, s[skind][key])
            want["http"] += sum(t["http"].values())
    print("HTTP requests (tshark): %d" % want["http"])
    for k, what in [("host", "HTTP requests with a host"), ("ua", "HTTP requests with a user agent"),
                    ("tls", "TLS ClientHellos"), ("tls_ja4", "TLS ClientHellos with JA4"),
                    ("quic", "QUIC ClientHellos"), ("quic_ja4", "QUIC ClientHellos with JA4")]:
        pct = 100.0 * got[k] / want[k] if want[k] else 0
        print("%-32s %5d of %5d  %5.1f%%" % (what, got[k], want[k], pct))


if __name__ == "__main__":
    main()
