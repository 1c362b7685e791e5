package names

import (
	"fmt"
	"iter"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/classify"
	"github.com/chains-sensor/chains-sensor/stages/internal/stagestest"
	"github.com/chains-sensor/chains-sensor/stages/sinks"
	"github.com/miekg/dns"
)

// ptrServer is an in-process DNS server on 127.0.0.1 answering PTR queries from a table.
type ptrServer struct {
	mu      sync.Mutex
	names   map[string]string // arpa name -> PTR target ("" for NXDOMAIN)
	ttl     uint32
	def     func(q string) (string, bool) // fallback for names not in the table
	queries atomic.Int64
	perName map[string]int
	addr    string
	srv     *dns.Server
}

func startPTRServer(t *testing.T) *ptrServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &ptrServer{names: map[string]string{}, ttl: 300, perName: map[string]int{}, addr: pc.LocalAddr().String()}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: dns.HandlerFunc(s.serve)}
	go s.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

func (s *ptrServer) set(addr, name string) {
	arpa, _ := dns.ReverseAddr(addr)
	s.mu.Lock()
	s.names[arpa] = name
	s.mu.Unlock()
}

func (s *ptrServer) setTTL(ttl uint32) {
	s.mu.Lock()
	s.ttl = ttl
	s.mu.Unlock()
}

func (s *ptrServer) setDefault(def func(q string) (string, bool)) {
	s.mu.Lock()
	s.def = def
	s.mu.Unlock()
}

func (s *ptrServer) count(addr string) int {
	arpa, _ := dns.ReverseAddr(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perName[arpa]
}

func (s *ptrServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	s.mu.Lock()
	s.perName[q.Name]++
	name, ok := s.names[q.Name]
	ttl := s.ttl
	def := s.def
	s.mu.Unlock()
	if !ok && def != nil {
		name, ok = def(q.Name)
	}
	if !ok || name == "" {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "in-addr.arpa.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: 30}}
	} else {
		m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: name}}
	}
	w.WriteMsg(m)
}

type pkt struct{ src, dst string }

// reusingSource yields packets through ONE reused stages.Packet, as real sources do.
func reusingSource(list []pkt) iter.Seq[*stages.Packet] { return slowSource(list, 0) }

// slowSource is reusingSource sleeping a millisecond every `every` packets (0: never).
func slowSource(list []pkt, every int) iter.Seq[*stages.Packet] {
	return func(yield func(*stages.Packet) bool) {
		var p stages.Packet
		buf := make([]byte, 8)
		frame := make([]byte, 60)
		for i, x := range list {
			if every > 0 && i%every == 0 {
				time.Sleep(time.Millisecond)
			}
			p.Reset()
			p.Num = uint64(i + 1)
			p.Time = time.Unix(1441652914, 0)
			p.EtherType = stages.EtherTypeIPv4
			p.IPVersion = 4
			p.Src = netip.MustParseAddr(x.src)
			p.Dst = netip.MustParseAddr(x.dst)
			if p.Src.Is6() {
				p.EtherType, p.IPVersion = stages.EtherTypeIPv6, 6
			}
			p.Proto = stages.ProtoUDP
			for j := range buf {
				buf[j] = byte(i)
			}
			p.Payload = buf
			p.PayloadLen = 8
			for j := range frame {
				frame[j] = byte(i) ^ 0xff
			}
			p.Frame = frame
			if !yield(&p) {
				return
			}
		}
	}
}

type seen struct {
	num      uint64
	src, dst string
	tags     stages.Tags
	payload0 byte
}

func runRDNS(t *testing.T, cfg ResolverConfig, list []pkt) ([]seen, *Resolver) {
	return runRDNSFrom(t, cfg, list, reusingSource(list))
}

func runRDNSFrom(t *testing.T, cfg ResolverConfig, list []pkt, src iter.Seq[*stages.Packet]) ([]seen, *Resolver) {
	t.Helper()
	cfg.HostsFile = "-"
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	var out []seen
	for p := range st(src) {
		if p.Frame[0]^0xff != p.Payload[0] {
			t.Fatalf("packet %d carries the frame of packet %d: held frame not copied", p.Num, p.Frame[0]^0xff+1)
		}
		out = append(out, seen{p.Num, p.SrcDomain, p.DstDomain, p.Tags, p.Payload[0]})
	}
	checkOrder(t, out, len(list))
	return out, r
}

func checkOrder(t *testing.T, out []seen, n int) {
	t.Helper()
	if len(out) != n {
		t.Fatalf("got %d packets, want %d", len(out), n)
	}
	for i, s := range out {
		if s.num != uint64(i+1) {
			t.Fatalf("packet %d came out as number %d: order not preserved", i+1, s.num)
		}
		if s.payload0 != byte(i) {
			t.Fatalf("packet %d carries payload of packet %d: held packet not copied", i+1, int(s.payload0)+1)
		}

	}
}

func TestRDNSNames(t *testing.T) {
	s := startPTRServer(t)
	s.set("8.8.8.8", "dns.google.")
	s.set("2606:4700::1111", "one.one.one.one.")
	list := []pkt{
		{"192.168.1.9", "8.8.8.8"},
		{"8.8.8.8", "192.168.1.9"},
		{"192.168.1.9", "224.0.0.251"},
		{"2001:db8::1", "2606:4700::1111"},
		{"192.168.1.9", "8.8.8.8"},
	}
	out, r := runRDNS(t, ResolverConfig{Servers: []string{s.addr}, Wait: 2 * time.Second}, list)
	want := []seen{
		{1, "internal", "dns.google", stages.TagOutgoing, 0},
		{2, "dns.google", "internal", stages.TagIncoming, 1},
		{3, "internal", "multicast_dns", stages.TagInternal, 2},
		{4, "documentation", "one.one.one.one", 0, 3},
		{5, "internal", "dns.google", stages.TagOutgoing, 4},
	}
	for i := range want {
		if out[i] != want[i] {
			t.Errorf("packet %d: got %+v, want %+v", i+1, out[i], want[i])
		}
	}
	if n := s.count("8.8.8.8"); n != 1 {
		t.Errorf("8.8.8.8 looked up %d times, want 1 (one lookup per address, then cached)", n)
	}
	if st := r.Stats(); st.Answers != 2 || st.Lookups != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRDNSTTLExpiry(t *testing.T) {
	s := startPTRServer(t)
	s.setTTL(1)
	s.set("1.1.1.1", "first.example.")
	cfg := ResolverConfig{Servers: []string{s.addr}, Wait: 2 * time.Second, MinTTL: time.Millisecond, HostsFile: "-"}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	// One packet now, then the source sleeps past the TTL and sends more.
	src := func(yield func(*stages.Packet) bool) {
		mk := func(n uint64) *stages.Packet {
			return &stages.Packet{Num: n, Time: time.Now(), IPVersion: 4, EtherType: stages.EtherTypeIPv4,
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("1.1.1.1")}
		}
		if !yield(mk(1)) {
			return
		}
		for i := 0; s.count("1.1.1.1") == 0 && i < 500; i++ {
			time.Sleep(10 * time.Millisecond) // until the first lookup reached the server
		}
		time.Sleep(50 * time.Millisecond) // and its answer is back
		s.set("1.1.1.1", "second.example.")
		time.Sleep(1100 * time.Millisecond)
		if !yield(mk(2)) { // stale name served, refresh started
			return
		}
		for i := 0; s.count("1.1.1.1") < 2 && i < 500; i++ {
			time.Sleep(10 * time.Millisecond) // until the refresh reached the server
		}
		time.Sleep(100 * time.Millisecond)
		yield(mk(3))
	}
	var got []string
	for p := range st(src) {
		got = append(got, p.DstDomain)
	}
	want := []string{"first.example", "first.example", "second.example"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("names %v, want %v", got, want)
	}
	if n := s.count("1.1.1.1"); n != 2 {
		t.Errorf("looked up %d times, want 2 (again after the TTL)", n)
	}
}

func TestRDNSNXDomain(t *testing.T) {
	s := startPTRServer(t)
	list := []pkt{{"10.1.1.1", "9.9.9.9"}, {"9.9.9.9", "10.1.1.1"}, {"10.1.1.1", "9.9.9.9"}}
	out, r := runRDNS(t, ResolverConfig{Servers: []string{s.addr}, Wait: 2 * time.Second}, list)
	for i, o := range out {
		if o.tags&stages.TagNXDomain == 0 {
			t.Errorf("packet %d: no nxdomain tag: %+v", i+1, o)
		}
	}
	if out[0].dst != stages.NXDomain || out[1].src != stages.NXDomain {
		t.Errorf("domains %+v", out)
	}
	if n := s.count("9.9.9.9"); n != 1 {
		t.Errorf("looked up %d times, want 1 (negative cache)", n)
	}
	if st := r.Stats(); st.Failures != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRDNSServerNeverAnswers(t *testing.T) {
	addr := stagestest.SilentDNS(t)
	var list []pkt
	for i := range 2000 {
		list = append(list, pkt{"10.0.0.1", fmt.Sprintf("8.8.%d.%d", i%20, i%7)})
	}
	start := time.Now()
	wait := 100 * time.Millisecond
	out, r := runRDNS(t, ResolverConfig{Servers: []string{addr}, Wait: wait, Timeout: 5 * time.Second}, list)
	el := time.Since(start)
	if el > 10*wait {
		t.Errorf("run took %v with a dead server; bounded wait is %v", el, wait)
	}
	for _, o := range out {
		if o.dst != "public" {
			t.Fatalf("unexpected name %+v", o)
		}
	}
	t.Logf("2000 packets in %v with a dead server; stats %+v", el, r.Stats())
}

func TestRDNSEscapes(t *testing.T) {
	s := startPTRServer(t)
	// A PTR target carrying ESC [ 2 J (clear screen), a bell, CR and DEL on the wire.
	s.set("5.5.5.5", `\027[2J\007evil\013\127.example.`)
	s.set("6.6.6.6", strings.Repeat("a", 63)+"."+strings.Repeat("b", 63)+"."+strings.Repeat("c", 63)+"."+strings.Repeat("d", 61)+".")
	list := []pkt{{"10.0.0.1", "5.5.5.5"}, {"10.0.0.1", "6.6.6.6"}}
	cfg := ResolverConfig{Servers: []string{s.addr}, Wait: 2 * time.Second, HostsFile: "-"}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text, js strings.Builder
	outT := sinks.NewOutput(&text, false)
	outJ := sinks.NewOutput(&js, false)
	nw := sinks.NewNetWatch(outT, sinks.Options{UTC: true})
	jsn := sinks.NewJSON(outJ, sinks.Options{UTC: true})
	for p := range stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())(reusingSource(list)) {
		nw.Write(p)
		jsn.Write(p)
	}
	nw.Close()
	jsn.Close()
	for _, out := range []string{text.String(), js.String()} {
		for i := 0; i < len(out); i++ {
			if c := out[i]; (c < 0x20 && c != '\n') || c == 0x7f {
				t.Fatalf("control byte %#x reached the output: %q", c, out)
			}
		}
	}
	if !strings.Contains(text.String(), "evil") || len(strings.Split(text.String(), "\n")[1]) > 400 {
		t.Errorf("output: %q", text.String())
	}
	t.Logf("text:\n%s", text.String())
}

// TestCleanName: names are kept as DNS presents them (RFC 1035 section 5.1: \DDD for an odd
// byte), UTF-8 decoded as tshark shows it, without the trailing dot, and cut to 253 bytes.
func TestCleanName(t *testing.T) {
	cases := map[string]string{
		"www.example.com.":       "www.example.com",
		`\027[2J.example.`:       `\027[2J.example`,
		`x\195\169.example.`:     "x\u00e9.example",
		"host.local":             "host.local",
		strings.Repeat("a", 300): strings.Repeat("a", 250) + "...",
	}
	for in, want := range cases {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRDNSManyAddressesBounded(t *testing.T) {
	s := startPTRServer(t)
	s.setDefault(func(q string) (string, bool) { return "h-" + strings.ReplaceAll(q, ".", "-") + ".example.", true })
	const n = 10000
	var list []pkt
	for i := range n {
		list = append(list, pkt{"10.0.0.1", fmt.Sprintf("44.%d.%d.%d", i>>16&255, i>>8&255, i&255)})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cfg := ResolverConfig{Servers: []string{s.addr}, Wait: 50 * time.Millisecond, Workers: 16, Queue: 256, CacheSize: 2000, MaxHeld: 512}
	out, r := runRDNSFrom(t, cfg, list, slowSource(list, 20))
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := r.Stats()
	t.Logf("stats %+v, heap %d -> %d", st, before.HeapAlloc, after.HeapAlloc)
	if st.MaxQueries > cfg.Workers || st.MaxQueries == 0 {
		t.Errorf("%d DNS queries at once, workers %d", st.MaxQueries, cfg.Workers)
	}
	// Requested and not yet applied: the request queue, the workers, and the answers not yet
	// picked up (the results channel holds Queue+Workers).
	if bound := 2 * (cfg.Queue + cfg.Workers); st.MaxInFlight > bound {
		t.Errorf("in flight %d > %d", st.MaxInFlight, bound)
	}
	if st.CacheLen > cfg.CacheSize {
		t.Errorf("cache %d > %d", st.CacheLen, cfg.CacheSize)
	}
	if st.MaxHeld > cfg.MaxHeld {
		t.Errorf("held %d > %d", st.MaxHeld, cfg.MaxHeld)
	}
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 16<<20 {
		t.Errorf("heap grew by %d bytes", grow)
	}
	named := 0
	for _, o := range out {
		if strings.HasPrefix(o.dst, "h-") {
			named++
		}
	}
	if named == 0 {
		t.Error("no name resolved")
	}
	t.Logf("%d of %d packets named", named, n)
}

// TestRDNSLive checks that in live mode a lone packet is released by the timer, without a
// following packet to push it out.
func TestRDNSLive(t *testing.T) {
	addr := stagestest.SilentDNS(t)
	cfg := ResolverConfig{Servers: []string{addr}, Wait: 80 * time.Millisecond, HostsFile: "-", Live: true}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	feed := make(chan *stages.Packet)
	src := func(yield func(*stages.Packet) bool) {
		for p := range feed {
			if !yield(p) {
				return
			}
		}
	}
	got := make(chan time.Time, 4)
	go func() {
		for range stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())(src) {
			got <- time.Now()
		}
		close(got)
	}()
	sent := time.Now()
	feed <- &stages.Packet{Num: 1, IPVersion: 4, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("7.7.7.7")}
	select {
	case at := <-got:
		// Nothing else arrives: only the timer can release it (generous bound for loaded machines).
		if d := at.Sub(sent); d < 60*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("released after %v, want about %v", d, cfg.Wait)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("lone packet never released")
	}
	close(feed)
	for range got {
	}
}

// TestRDNSHostsAndResolvConf: /etc/hosts-style names win without a query (kept as they are,
// escaped by the sinks); resolv.conf's nameservers become the servers.
func TestRDNSHostsAndResolvConf(t *testing.T) {
	dir := t.TempDir()
	hosts := dir + "/hosts"
	resolv := dir + "/resolv.conf"
	writeFile(t, hosts, "# comment\n8.8.4.4 dns-two.example alias\n2001:4860:4860::8844 dns-two-v6.example\n9.9.9.9 bad\x1bname\n")
	writeFile(t, resolv, "search example\nnameserver 192.0.2.53\nnameserver 2001:db8::53\n")
	r, err := NewResolver(ResolverConfig{HostsFile: hosts, ResolvConf: resolv})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.cfg.Servers, " "); got != "192.0.2.53:53 [2001:db8::53]:53" {
		t.Errorf("servers %q", got)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	var got []string
	for p := range st(reusingSource([]pkt{{"10.0.0.1", "8.8.4.4"}, {"fd00::1", "2001:4860:4860::8844"}, {"10.0.0.1", "9.9.9.9"}})) {
		got = append(got, sinks.Text(p.DstDomain))
	}
	want := []string{"dns-two.example", "dns-two-v6.example", `bad\x1bname`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("names %q, want %q", got, want)
	}
	if st := r.Stats(); st.Lookups != 0 {
		t.Errorf("%d DNS lookups for names in the hosts file", st.Lookups)
	}
	if _, err := NewResolver(ResolverConfig{HostsFile: "-", ResolvConf: dir + "/missing"}); err == nil || !strings.Contains(err.Error(), "-n") {
		t.Errorf("missing resolv.conf: %v", err)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRDNSLiveOrderAndNames: in live mode packets keep their order, carry the names the server
// gives, and survive the source reusing its stages.Packet.
func TestRDNSLiveOrderAndNames(t *testing.T) {
	s := startPTRServer(t)
	s.setDefault(func(q string) (string, bool) { return "n-" + strings.SplitN(q, ".", 2)[0] + ".example.", true })
	var list []pkt
	for i := range 300 {
		list = append(list, pkt{"10.0.0.1", fmt.Sprintf("44.1.1.%d", i%25)})
	}
	cfg := ResolverConfig{Servers: []string{s.addr}, Wait: time.Second, Live: true}
	out, _ := runRDNSFrom(t, cfg, list, slowSource(list, 10))
	for i, o := range out {
		want := fmt.Sprintf("n-%d.example", i%25)
		if o.dst != want {
			t.Fatalf("packet %d: %q, want %q", i+1, o.dst, want)
		}
	}
}

// TestRDNSCacheHits: an address named once is answered from the cache afterwards, and
// counted so (rdns_cache_hits, the metrics' cache hits): 4 packets to a hosts-file address are
// 1 first resolution and 3 hits; 2 to an internal address ask nothing and hit nothing.
func TestRDNSCacheHits(t *testing.T) {
	hosts := t.TempDir() + "/hosts"
	writeFile(t, hosts, "8.8.4.4 dns-two.example\n")
	r, err := NewResolver(ResolverConfig{HostsFile: hosts, Servers: []string{"127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	st := stages.Chain(classify.Stage(classify.NewClassifier(nil, nil)), r.Stage())
	n := 0
	for p := range st(reusingSource([]pkt{{"10.0.0.1", "8.8.4.4"}, {"10.0.0.1", "8.8.4.4"}, {"10.0.0.2", "10.0.0.1"}, {"10.0.0.1", "8.8.4.4"}, {"10.0.0.2", "10.0.0.1"}, {"10.0.0.1", "8.8.4.4"}})) {
		if p.Dst.String() == "8.8.4.4" && p.DstDomain != "dns-two.example" {
			t.Errorf("packet %d: %q", n, p.DstDomain)
		}
		n++
	}
	s := r.Stats()
	if n != 6 || s.CacheHits != 3 || s.Lookups != 0 {
		t.Errorf("%d packets, %d cache hits, %d lookups; want 6, 3, 0", n, s.CacheHits, s.Lookups)
	}
	var hits uint64
	for _, c := range r.Counters() {
		if c.Name == "rdns_cache_hits" {
			hits = c.Value
		}
	}
	if hits != 3 {
		t.Errorf("counter rdns_cache_hits %d, want 3", hits)
	}
}
