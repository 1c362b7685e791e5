#!/bin/sh
# Regenerates the tshark decodes the app-stage tests compare against (TShark 4.0.17, Debian 12).
# Tunnelled packets (L2TP, VXLAN, ICMP-quoted) are left out: the sensor does not enter tunnels.
# Run from this directory: ./gen.sh [PCAPS]  (default: the repository's testdata/pcaps)
set -e
P=${1:-../../../testdata/pcaps}
for f in chains/dns.pcap chains/https.pcap chains/nb6-http.pcap protocols/dns_tcp.pcap \
	protocols/dns_udp_a_aaaa_ptr_mx_nxdomain.pcap protocols/dns_udp_txt.pcap protocols/mdns_ipv4_ipv6.pcap \
	protocols/mdns_queries_answers.pcap protocols/llmnr_ipv6.pcapng protocols/ipv4_http_dns_wikipedia.pcap \
	protocols/pcapng_multi_interface_dns.pcapng protocols/linktype_raw_ipv4_dns.pcap protocols/dns_tcp_incomplete.pcap; do
	out=dns_$(basename "$f" | tr . _).tsv
	tshark -r "$P/$f" -Y '(dns or mdns or llmnr) and not icmp' -T fields -E separator='|' -E occurrence=a -E aggregator=',' \
		-e frame.number -e dns.id -e dns.flags.response -e dns.flags.opcode -e dns.flags.rcode \
		-e dns.flags.z -e dns.flags.truncated -e dns.count.queries -e dns.count.answers \
		-e dns.qry.name -e dns.qry.type -e dns.resp.ttl -e dns.a -e dns.aaaa -e dns.time > "$out"
done
for f in chains/http.pcap chains/sqli.pcap chains/nb6-http.pcap protocols/ipv4_tcp_http_get.pcap \
	protocols/ipv4_http_dns_wikipedia.pcap protocols/vlan0_priority_http.pcap protocols/tcp_fastopen_fin.pcap \
	protocols/ipv6_dstopts_atomic_frag_http.pcap; do
	out=http_$(basename "$f" | tr . _).tsv
	tshark -r "$P/$f" -Y '(http.request or http.response) and not l2tp and not vxlan' -T fields -E separator='|' -E occurrence=f \
		-e frame.number -e http.request.method -e http.host -e http.request.uri -e http.user_agent \
		-e http.referer -e http.response.code > "$out"
done
for f in chains/https.pcap protocols/tls12_clienthello_sni.pcap protocols/tls13_clienthello_sni.pcapng \
	protocols/linktype_sll2_tls13_sni.pcap protocols/tls13_large_clienthello_kyber.pcap protocols/tls13_ech_ipv6.pcapng protocols/tls13_hello_retry_request.pcap protocols/tls_quic_ja4_cloudflare.pcap; do
	out=tls_$(basename "$f" | tr . _).tsv
	tshark -o tcp.reassemble_out_of_order:TRUE -r "$P/$f" -Y '(tls.handshake.type == 1 or tls.handshake.type == 2) and not quic' -T fields -E separator='|' \
		-E occurrence=a -E aggregator=',' -e frame.number -e tls.handshake.type \
		-e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
		-e tls.handshake.extensions.supported_version -e tls.handshake.ciphersuite \
		-e tls.handshake.ja3_full -e tls.handshake.length -e tls.handshake.sig_hash_alg -e tls.handshake.sig_hash_alg_len -e tls.handshake.extension.type > "$out"
done
# QUIC: the hellos of the Initial packets tshark decrypts, with the QUIC version (same fields as tls_, then quic.version).
for f in protocols/quic_ja4_chrome.pcap protocols/quic_v2_echo.pcap protocols/quic_crypto_across_initials.pcap \
	protocols/quic_crypto_unordered_rawip.pcap protocols/quic_port_4433.pcap protocols/tls_quic_ja4_cloudflare.pcap; do
	out=quic_$(basename "$f" | tr . _).tsv
	tshark -r "$P/$f" -Y 'quic and (tls.handshake.type == 1 or tls.handshake.type == 2)' -T fields -E separator='|' \
		-E occurrence=a -E aggregator=',' -e frame.number -e tls.handshake.type \
		-e tls.handshake.extensions_server_name -e tls.handshake.extensions_alpn_str \
		-e tls.handshake.extensions.supported_version -e tls.handshake.ciphersuite \
		-e tls.handshake.ja3_full -e tls.handshake.length -e tls.handshake.sig_hash_alg -e tls.handshake.sig_hash_alg_len -e tls.handshake.extension.type \
		-e quic.version > "$out"
done
for f in chains/http.pcap chains/dns.pcap chains/https.pcap chains/sqli.pcap protocols/tcp_rst.pcap \
	protocols/tcp_fastopen_fin.pcap protocols/ipv6_tcp_smtp.pcap protocols/ipv4_http_dns_wikipedia.pcap \
	protocols/mdns_ipv4_ipv6.pcap protocols/linktype_sll2_tls13_sni.pcap; do
	out=flows_$(basename "$f" | tr . _).tsv
	tshark -r "$P/$f" -Y '(tcp or udp) and not icmp and not icmpv6 and not l2tp and not vxlan and not gre' \
		-T fields -E separator='|' -E occurrence=f -e frame.number -e tcp.stream -e udp.stream \
		-e ip.src -e ipv6.src -e tcp.srcport -e udp.srcport -e ip.dst -e ipv6.dst -e tcp.dstport -e udp.dstport \
		-e frame.len -e tcp.flags.fin -e tcp.flags.reset > "$out"
done
