package stages

// The application views in the view registry (view.go). Each runs the shared front of the chain
// (domains, reverse DNS unless -n), then the application stages, then its sink. The
// application stages come after the front, so that a packet's Flow is still its own (not yet
// recycled for a later flow) when the sink prints the packet.
func init() {
	for _, v := range []struct{ name, doc string }{
		{ViewURLWatch, "a line per HTTP request or response and per TLS hello (SNI, ALPN, versions, JA4/JA4S)"},
		{ViewWeirdDNS, "each weird DNS message: why it is weird, its queries and answers"},
		{ViewFlows, "a line per finished flow: packets and bytes each way, TCP state, Community ID"},
	} {
		name := v.name
		RegisterView(View{Name: name, Doc: v.doc, Build: func(cfg *Config, base Stage, out *Output) (Stage, Sink, error) {
			st, sink, _ := NewAppView(name, AppConfig{}, out,
				AppViewOptions{JSON: cfg.Format == "json", UTC: cfg.UTC, Color: cfg.Color})
			sink.OnClose = out.Close
			return Chain(base, st), sink, nil
		}})
	}
}
