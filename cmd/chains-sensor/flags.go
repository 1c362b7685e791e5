package main

// Checks of flag values. Every value is checked before anything is attached or read, and a
// value out of range is bad usage (exit 2) with an error that names the flag and what it
// takes: never a silent wrap (seconds times 1e9 overflowing int64), never a default that
// stands in for a value that was given.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/urfave/cli/v2"
)

// durationIn returns the duration flag name, checked against [lo, hi].
func durationIn(c *cli.Context, name string, lo, hi time.Duration) (time.Duration, error) {
	d := c.Duration(name)
	if d < lo || d > hi {
		return 0, usageErrorf("--%s %v: want a duration from %v to %v", name, d, lo, hi)
	}
	return d, nil
}

// intIn returns the integer flag name, checked against [lo, hi].
func intIn(c *cli.Context, name string, lo, hi int) (int, error) {
	n := c.Int(name)
	if n < lo || n > hi {
		return 0, usageErrorf("--%s %d: want %d to %d", name, n, lo, hi)
	}
	return n, nil
}

// uintIn returns the unsigned flag name, checked against [lo, hi].
func uintIn(c *cli.Context, name string, lo, hi uint64) (uint64, error) {
	n := c.Uint64(name)
	if n < lo || n > hi {
		return 0, usageErrorf("--%s %d: want %d to %d", name, n, lo, hi)
	}
	return n, nil
}

// oneOf checks an enumerated flag value.
func oneOf(name, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return usageErrorf("--%s %q: want %s", name, v, strings.Join(allowed, ", "))
}

// maxStatsSeconds bounds --stats-interval: a day (time.Duration would overflow past 292 years,
// and seconds times 1e9 past 9,223,372,036).
const maxStatsSeconds = 86400

// statsInterval reads --stats-interval SECONDS.
func statsInterval(c *cli.Context, name string) (time.Duration, error) {
	n := c.Int64(name)
	if n < 0 || n > maxStatsSeconds {
		return 0, usageErrorf("--%s %d: want 0 (only on exit) to %d seconds", name, n, maxStatsSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// parseServer checks a DNS server given as HOST[:PORT]: an IPv4 address, an IPv6 address (in
// brackets when a port follows: [::1]:53), or a host name; PORT from 1 to 65535, 53 when
// left out. It returns the address as HOST:PORT for the resolver.
func parseServer(flag, s string) (string, error) {
	bad := func(why string) (string, error) {
		return "", usageErrorf("--%s %q: %s (want HOST or HOST:PORT, an IPv6 address in brackets before a port: [::1]:53)", flag, s, why)
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return bad("port 0")
		}
		return ap.String(), nil
	}
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(bare); err == nil {
		if bare != s && !a.Is6() {
			return bad("only an IPv6 address goes in brackets")
		}
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	host, port := s, "53"
	if strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return bad("not HOST:PORT")
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", port))
	}
	if host == "" {
		return bad("no host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(host, port), nil // an IPv4 address with a port (IPv6 parsed above)
	}
	if _, ok := dns.IsDomainName(host); !ok || strings.ContainsAny(host, "[]:/ \t") {
		return bad(fmt.Sprintf("%q is neither an address nor a host name", host))
	}
	return net.JoinHostPort(host, port), nil
}
