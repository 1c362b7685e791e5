package names

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
	"github.com/miekg/dns"
)

// lookup asks the servers in turn for the PTR of a; the first answer that says whether a name
// exists ends it, else the last server's failure says why there is none.
func (r *Resolver) lookup(ctx context.Context, a netip.Addr, conns map[string]*dns.Conn) rdnsResult {
	res := rdnsResult{addr: a, ttl: r.cfg.NegTTL, outcome: stages.RDNSError}
	arpa, err := dns.ReverseAddr(a.String())
	if err != nil {
		return res
	}
	m := new(dns.Msg)
	m.SetQuestion(arpa, dns.TypePTR)
	for _, srv := range r.cfg.Servers {
		if ctx.Err() != nil {
			return res
		}
		qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		conn := conns[srv]
		var err error
		if conn == nil {
			if conn, err = r.client.DialContext(qctx, srv); err == nil {
				conns[srv] = conn
			}
		}
		var in *dns.Msg
		if err == nil {
			in, _, err = r.client.ExchangeWithConnContext(qctx, m, conn)
		}
		cancel()
		if err != nil || in == nil {
			if conn != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
				conn.Close() // refused, unreachable or broken: dial afresh next time
				delete(conns, srv)
			}
			res.outcome = exchangeOutcome(err)
			continue
		}
		name, ttl, asked := ptrAnswer(in, arpa)
		if !asked {
			res.outcome = stages.RDNSError // an answer to another question (its id alone matched): ptr.go
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
			if res.name = cleanName(name); res.name != "" {
				res.ttl = time.Duration(ttl) * time.Second
				res.outcome = stages.RDNSName
				return res
			}
			res.outcome = stages.RDNSNoData
			res.ttl = negTTL(in, r.cfg.NegTTL)
			return res
		case dns.RcodeNameError:
			res.outcome = stages.RDNSNXDomain
			res.ttl = negTTL(in, r.cfg.NegTTL)
			return res
		case dns.RcodeRefused:
			res.outcome = stages.RDNSRefused
		case dns.RcodeServerFailure:
			res.outcome = stages.RDNSServFail
		default:
			res.outcome = stages.RDNSError
		}
	}
	return res
}

// exchangeOutcome says why a query got no answer.
func exchangeOutcome(err error) stages.RDNS {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return stages.RDNSTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return stages.RDNSRefused
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN),
		errors.Is(err, syscall.ENETDOWN), errors.Is(err, syscall.EADDRNOTAVAIL):
		return stages.RDNSUnreachable
	}
	return stages.RDNSError
}

// negTTL is the negative-caching TTL of RFC 2308: the SOA's minimum, capped by its own TTL.
func negTTL(m *dns.Msg, def time.Duration) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return def
}
