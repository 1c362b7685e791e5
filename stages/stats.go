package stages

// TableStats describes one bounded table a stage keeps (a cache, a table of flows, a queue of
// held packets): how many entries it holds, its bound and the flag that sets it, and how many
// entries the bound pushed out. Every table has one; the commands print them at exit (and
// with -o json as JSON), so that a bound that bites is seen.
type TableStats struct {
	Name    string `json:"name"`    // e.g. "rdns_cache"
	Flag    string `json:"flag"`    // the flag that sets Max, e.g. "--rdns-cache"
	Len     int    `json:"len"`     // entries now (-1: not known)
	Peak    int    `json:"peak"`    // most entries at once, when known (else Len)
	Max     int    `json:"max"`     // the bound
	Evicted int64  `json:"evicted"` // entries the bound pushed out (or refused, for a table that refuses); -1 not counted
}

// Counter is one named count a stage shows at exit (how many lookups timed out, ...).
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// StatsReporter is the state behind a stage that has bounded tables and counts to show at
// exit. Tables and Counters are read after the stage has ended, or from another goroutine
// while it runs (the reporter publishes what it can read safely).
type StatsReporter interface {
	Tables() []TableStats
	Counters() []Counter
}
