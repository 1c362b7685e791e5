module github.com/chains-sensor/chains-sensor

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/gopacket/gopacket v1.7.7
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/miekg/dns v1.1.73
	golang.org/x/sys v0.50.0
)

require golang.org/x/net v0.57.0 // indirect

tool github.com/cilium/ebpf/cmd/bpf2go
