package views

import (
	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/chains-sensor/chains-sensor/stages/flows"
	"github.com/chains-sensor/chains-sensor/stages/names"
	"github.com/chains-sensor/chains-sensor/stages/protocols"
)

// flowTables reports the flow table and its handlers' tables: the DNS decoder's pending
// queries and NXDOMAIN-burst clients, and (in the App views) the QUIC handshakes. The flows
// and protocols types keep the counts; this says which bound and flag each answers to.
type flowTables struct {
	t    *flows.Table
	fc   flows.Config
	dns  *protocols.DNSTracker
	dc   protocols.DNSConfig
	quic *protocols.QUICHandler // nil outside the App views
	qc   protocols.QUICConfig
}

// or returns v, or def when v is not set (a config's zero value means its default).
func or(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func (f flowTables) Tables() []stages.TableStats {
	st := f.t.Stats()
	ds := f.dns.Stats()
	out := []stages.TableStats{
		{Name: "flows", Flag: "--max-flows", Len: st.Active, Peak: st.Active, Max: or(f.fc.MaxFlows, flows.DefaultMaxFlows), Evicted: int64(st.Evicted)},
		{Name: "dns_pending", Flag: "--dns-max-pending", Len: ds.Pending, Peak: ds.PendingPeak, Max: or(f.dc.MaxPending, protocols.DefaultMaxPending), Evicted: int64(ds.PendingEvicted)},
		{Name: "dns_nxdomain_clients", Flag: "--dns-max-clients", Len: ds.Clients, Peak: ds.ClientsPeak, Max: or(f.dc.MaxClients, protocols.DefaultMaxClients), Evicted: int64(ds.ClientsEvicted)},
	}
	if f.quic != nil {
		qs := f.quic.Stats()
		out = append(out, stages.TableStats{Name: "quic_handshakes", Flag: "--quic-max-handshakes", Len: qs.Conns, Peak: qs.ConnsPeak, Max: or(f.qc.MaxConns, protocols.DefaultQUICConns), Evicted: int64(qs.Evicted)})
	}
	return out
}

func (f flowTables) Counters() []stages.Counter {
	st := f.t.Stats()
	ds := f.dns.Stats()
	out := []stages.Counter{{Name: "flows_created", Value: st.Flows}, {Name: "flows_ended", Value: st.Ended},
		{Name: "flows_expired", Value: st.Expired}, {Name: "flow_streams_denied", Value: st.StreamsDenied},
		{Name: "dns_messages", Value: ds.Messages}, {Name: "dns_matched", Value: ds.Matched},
		{Name: "dns_unsolicited", Value: ds.Unsolicited}, {Name: "dns_unanswered", Value: ds.PendingExpired}}
	if f.quic != nil {
		qs := f.quic.Stats()
		out = append(out, stages.Counter{Name: "quic_initials", Value: qs.Initials}, stages.Counter{Name: "quic_undecrypted", Value: qs.Undecrypted},
			stages.Counter{Name: "quic_hellos", Value: qs.Hellos}, stages.Counter{Name: "quic_expired", Value: qs.Expired},
			stages.Counter{Name: "quic_crypto_denied", Value: qs.Denied})
	}
	return out
}

// wireTables reports the table of names learned from DNS answers on the wire.
type wireTables struct{ w *names.Wire }

func (w wireTables) Tables() []stages.TableStats {
	return []stages.TableStats{{Name: "wire_names", Flag: "--wire-names", Len: w.w.Len(), Peak: w.w.Peak(), Max: w.w.Size(), Evicted: w.w.Evicted()}}
}

func (w wireTables) Counters() []stages.Counter {
	st := w.w.Stats()
	return []stages.Counter{{Name: "wire_names_learned", Value: st.Learned}, {Name: "wire_names_unmatched", Value: st.Unmatched}}
}
