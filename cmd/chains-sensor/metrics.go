package main

import (
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/chains-sensor/chains-sensor/gen"
	"github.com/chains-sensor/chains-sensor/sensor"
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/fleet"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
	"github.com/chains-sensor/chains-sensor/stages/views"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsServer serves --metrics: Prometheus's text format at /metrics, made at each scrape
// from what the parts count (the kernel's counters, the ring reader's, the chain's published
// Stats, the publisher's), so that nothing on the packets' path counts for it.
type metricsServer struct {
	srv *http.Server
	ln  net.Listener
	col *sensorCollector
	reg *prometheus.Registry
}

// startMetrics listens on addr and serves there until close.
func startMetrics(addr string) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagMetrics, err)
	}
	m := &metricsServer{ln: ln, col: &sensorCollector{}, reg: prometheus.NewRegistry()}
	m.reg.MustRegister(m.col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/metrics", http.StatusFound)
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go m.srv.Serve(ln)
	return m, nil
}

// Addr is where the server listens.
func (m *metricsServer) Addr() string { return m.ln.Addr().String() }

func (m *metricsServer) close() {
	if m != nil {
		m.srv.Close()
	}
}

// buildInfo is chains_sensor_build_info: 1, labelled with the module's version, the VCS
// revision and the Go version the binary was built with.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chains_sensor_build_info",
		Help:        "A metric with a constant 1 value labelled by the version, revision and Go version of chains-sensor.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion}})
	g.Set(1)
	return g
}

// sensorCollector collects at scrape time from the sources a run sets as they come to be.
type sensorCollector struct {
	mu       sync.Mutex
	objs     *sensor.Objects
	live     *sensor.Live
	reader   *sensor.Reader
	pipeline *views.Pipeline
	pub      *fleet.Publisher
	pubReady func() bool
}

func (c *sensorCollector) set(f func(c *sensorCollector)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// Describe sends nothing: the collector is unchecked (its series depend on the run).
func (c *sensorCollector) Describe(chan<- *prometheus.Desc) {}

// metricEmitter makes one sample at a time.
type metricEmitter struct{ ch chan<- prometheus.Metric }

func (e metricEmitter) emit(name, help string, typ prometheus.ValueType, v float64, labels ...string) {
	var keys, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		keys, values = append(keys, labels[i]), append(values, labels[i+1])
	}
	e.ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, keys, nil), typ, v, values...)
}

func (e metricEmitter) counter(name, help string, v uint64, labels ...string) {
	e.emit(name, help, prometheus.CounterValue, float64(v), labels...)
}

func (e metricEmitter) gauge(name, help string, v float64, labels ...string) {
	e.emit(name, help, prometheus.GaugeValue, v, labels...)
}

// Collect reads every source.
func (c *sensorCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	objs, live, rd, pl, pub, ready := c.objs, c.live, c.reader, c.pipeline, c.pub, c.pubReady
	c.mu.Unlock()
	e := metricEmitter{ch}
	if objs != nil && live != nil {
		c.collectKernel(e, objs, live)
	}
	if rd != nil {
		st := rd.Stats()
		e.counter("chains_sensor_ring_records_total", "Records read from the BPF ring buffer.", st.Records)
		e.counter("chains_sensor_ring_read_bytes_total", "Bytes of the records read from the ring buffer.", st.Bytes)
		e.counter("chains_sensor_ring_wakeups_total", "Returns from sleep that found records in the ring buffer.", st.Wakeups)
		e.counter("chains_sensor_ring_poll_timeouts_total", "Sleeps on the ring buffer ended by the poll timeout rather than by the kernel.", st.Timeouts)
		e.counter("chains_sensor_ring_lingers_total", "Pauses after a small batch of records.", st.Lingers)
		avail, size := rd.Fill()
		e.gauge("chains_sensor_ring_size_bytes", "Size of the BPF ring buffer.", float64(size))
		e.gauge("chains_sensor_ring_fill_bytes", "Bytes waiting in the ring buffer to be read.", float64(avail))
		if size > 0 {
			e.gauge("chains_sensor_ring_fill_ratio", "Fraction of the ring buffer waiting to be read.", float64(avail)/float64(size))
		}
	}
	if pl != nil {
		collectPipeline(e, pl.Published())
	}
	if pub != nil {
		collectPublisher(e, pub.Counters(), ready)
	}
}

// collectKernel reads the sensor programs' counters and user space's account of them.
func (c *sensorCollector) collectKernel(e metricEmitter, objs *sensor.Objects, live *sensor.Live) {
	u := live.Counts() // before the kernel's: seen >= recorded
	k, err := sensor.ReadKernelCounts(objs)
	if err != nil {
		return
	}
	raw, err := sensor.ReadCounters(objs)
	if err != nil {
		return
	}
	l := sensor.Account(k, u)
	// The closing line's account.
	e.counter("chains_sensor_packets_seen_total", "Packets the kernel programs ran on (the closing line's seen).", l.Seen)
	e.counter("chains_sensor_packets_recorded_total", "Packets that reached user space and were decoded (the closing line's recorded).", l.Recorded)
	e.counter("chains_sensor_packets_lost_total", "Packets seen and neither filtered out nor recorded (the closing line's lost; while running it includes records in flight).", l.Lost)
	if k.Filter {
		e.counter("chains_sensor_packets_filtered_total", "Packets the filter expression rejected in the kernel (the closing line's filtered out).", l.Filtered)
	}
	e.counter("chains_sensor_records_undecodable_total", "Ring-buffer records user space could not decode.", u.Undecodable)
	// Per hook, from the kernel's counters.
	for _, h := range []struct {
		hook                    string
		emitted, lost, filtered gen.SensorCounterKey
	}{{"xdp", gen.SensorCounterKeyCNT_XDP_EMITTED, gen.SensorCounterKeyCNT_XDP_LOST, gen.SensorCounterKeyCNT_XDP_FILTERED},
		{"tc", gen.SensorCounterKeyCNT_TC_EMITTED, gen.SensorCounterKeyCNT_TC_LOST, gen.SensorCounterKeyCNT_TC_FILTERED}} {
		e.counter("chains_sensor_hook_packets_seen_total", "Packets a kernel program ran on, by hook (xdp: ingress, tc: egress).",
			raw[h.emitted]+raw[h.lost]+raw[h.filtered], "hook", h.hook)
		e.counter("chains_sensor_hook_records_emitted_total", "Records a kernel program put in the ring buffer, by hook.", raw[h.emitted], "hook", h.hook)
		e.counter("chains_sensor_hook_records_lost_total", "Records lost to a full ring buffer, by hook.", raw[h.lost], "hook", h.hook)
		if k.Filter {
			e.counter("chains_sensor_hook_packets_filtered_total", "Packets the filter expression rejected, by hook.", raw[h.filtered], "hook", h.hook)
		}
	}
	e.counter("chains_sensor_records_without_payload_total", "Records that arrived without their payload bytes.", k.SnapFailed)
	e.counter("chains_sensor_packets_unsupported_total", "Packets deeper than the parser goes.", raw[gen.SensorCounterKeyCNT_UNSUPPORTED])
	for layer := stages.LayerEthernet; layer <= stages.LayerTunnel; layer++ {
		e.counter("chains_sensor_packets_truncated_total", "Packets cut short, by the layer where they end.", raw.Truncated(layer), "layer", layer.String())
		e.counter("chains_sensor_packets_malformed_total", "Packets with an impossible field, by layer.", raw.Malformed(layer), "layer", layer.String())
	}
	// Per interface: records by hook (user space), losses and rejections (kernel).
	for _, ic := range u.Ifaces {
		e.counter("chains_sensor_interface_records_total", "Records read per interface and hook.", ic.In, "interface", ic.Iface, "hook", "xdp")
		e.counter("chains_sensor_interface_records_total", "Records read per interface and hook.", ic.Out, "interface", ic.Iface, "hook", "tc")
		e.counter("chains_sensor_interface_records_lost_total", "Records lost to a full ring buffer, per interface.", k.LostByIfindex[ic.Ifindex], "interface", ic.Iface)
		if k.Filter {
			e.counter("chains_sensor_interface_packets_filtered_total", "Packets the filter expression rejected, per interface.", k.FilteredByIfindex[ic.Ifindex], "interface", ic.Iface)
		}
	}
}

// collectPipeline exports the chain's tables and counters, as the chain last published them
// (views.Pipeline.Published): the same TableStats and Counters the exit prints. Each table is
// chains_sensor_table_*{table}; each counter chains_sensor_NAME_total, but the stages' packets
// (views.StagePacketsPrefix) are chains_sensor_stage_packets_total{stage} and the weird DNS
// reasons (views.DNSWeirdPrefix) chains_sensor_dns_weird_reasons_total{rule}, every rule.
func collectPipeline(e metricEmitter, snap views.Snapshot) {
	for _, t := range snap.Tables {
		if t.Len >= 0 {
			e.gauge("chains_sensor_table_entries", "Entries a bounded table of the chain holds (the exit's table lines).", float64(t.Len), "table", t.Name)
		}
		if t.Peak >= 0 {
			e.gauge("chains_sensor_table_peak_entries", "Most entries a bounded table of the chain held at once.", float64(t.Peak), "table", t.Name)
		}
		e.gauge("chains_sensor_table_max_entries", "The bound of a table of the chain (its flag sets it).", float64(t.Max), "table", t.Name, "flag", t.Flag)
		if t.Evicted >= 0 {
			e.counter("chains_sensor_table_evictions_total", "Entries a table's bound pushed out or refused, by table.", uint64(t.Evicted), "table", t.Name)
		}
	}
	weird := map[string]uint64{}
	dns := false
	for _, c := range snap.Counters {
		switch {
		case strings.HasPrefix(c.Name, views.StagePacketsPrefix):
			e.counter("chains_sensor_stage_packets_total", "Packets each stage of the chain passed on (sink: the view's sink and the outputs beside it got).",
				c.Value, "stage", strings.TrimPrefix(c.Name, views.StagePacketsPrefix))
		case strings.HasPrefix(c.Name, views.DNSWeirdPrefix):
			weird[strings.TrimPrefix(c.Name, views.DNSWeirdPrefix)] = c.Value
		default:
			dns = dns || c.Name == "dns_messages"
			e.counter("chains_sensor_"+c.Name+"_total", "The chain's count "+c.Name+" (the exit's stages line).", c.Value)
		}
	}
	if dns {
		for _, rule := range protocols.WeirdRules {
			e.counter("chains_sensor_dns_weird_reasons_total", "Weird reasons of DNS messages, by rule.", weird[rule], "rule", rule)
		}
	}
}

// collectPublisher exports the publisher's counters.
func collectPublisher(e metricEmitter, c fleet.Counters, ready func() bool) {
	e.counter("chains_sensor_publish_records_total", "Records made for the stream (with those found in the spool at start).", c.Records+c.Restored)
	e.counter("chains_sensor_publish_published_total", "Records sent to the stream at least once.", c.Published)
	e.counter("chains_sensor_publish_retries_total", "Records sent again after a failure or a timeout.", c.Retries)
	e.counter("chains_sensor_publish_acked_total", "Records the stream acknowledged (stored).", c.Acked)
	e.counter("chains_sensor_publish_duplicates_total", "Acknowledgements of records the stream had already (not stored twice).", c.Duplicates)
	e.counter("chains_sensor_publish_spooled_total", "Records written to the disk spool.", c.Spooled)
	e.counter("chains_sensor_publish_dropped_total", "Records lost: the memory queue and the spool were full (or no spool at exit).", c.Dropped)
	e.gauge("chains_sensor_publish_pending_records", "Records not acknowledged yet: queued, in flight or spooled.", float64(c.Pending))
	e.gauge("chains_sensor_publish_inflight_records", "Records sent and not acknowledged yet.", float64(c.InFlight))
	e.gauge("chains_sensor_publish_queue_bytes", "Bytes of the records waiting in memory.", float64(c.QueueBytes))
	e.gauge("chains_sensor_publish_spool_bytes", "Bytes of the spool's files.", float64(c.SpoolBytes))
	if ready != nil {
		v := 0.0
		if ready() {
			v = 1
		}
		e.gauge("chains_sensor_publish_connected", "1 when a NATS server answers and the stream is there.", v)
	}
}
