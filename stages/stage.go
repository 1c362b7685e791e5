// Package stages is the vocabulary of the user-space half of chains-sensor: what every stage
// reads and writes, and nothing else. Packet (the kernel record decoded, then enriched), the
// record's enums, Class and Tags, the application info types (Flow, DNSInfo, HTTPInfo,
// TLSInfo), and Stage, the type that links stages into a chain. It imports the standard
// library only; every other package imports it, and sensor/ imports nothing else of stages/.
//
// Below it, one package per concern, imports pointing only down (a test enforces it):
//
//	classify   address classes and direction tags
//	flows      the flow table, TCP reassembly, Community ID; knows decoders only as Handlers
//	protocols  DNS, HTTP, TLS (and JA4), one file each: the flow table's Handlers
//	names      reverse DNS (PTR) and names from DNS answers on the wire
//	sinks      one output per file behind one interface, sharing one escaper set, one clock,
//	           one endpoint formatter, one protocol namer and one JSON writer
//	views      the views as a plain list, and Build: the one place that builds a chain
//
// A chain is pulled by its sink, as the generators of the original Python "chains" were:
//
//	chain, _ := views.Build(&views.Config{View: "net_watch"}, out)
//	chain.Run(src) // src: iter.Seq[*Packet], the ring buffer or a capture file
//
// A stage may hold a packet back (reverse DNS waits, bounded, for a name) but yields packets in
// the order it received them. Packets are reused by sources: a stage that keeps data beyond the
// yield must copy it.
package stages

import "iter"

// Stage transforms a sequence of packets into another; the sink pulls. A Stage must yield
// packets in the order it received them and must stop when its consumer stops.
type Stage func(iter.Seq[*Packet]) iter.Seq[*Packet]

// Chain links stages left to right into one stage. An empty chain passes packets through.
func Chain(stages ...Stage) Stage {
	return func(src iter.Seq[*Packet]) iter.Seq[*Packet] {
		for _, s := range stages {
			src = s(src)
		}
		return src
	}
}
