package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the JetStream stream the records go to, as a sensor creates it when it is
// not there (an existing stream is used as it is, if it takes the subjects). The limits are
// what nats-server 2.9 knows (Debian 12's): no compression, no subject transforms, no
// per-message TTL.
type StreamConfig struct {
	Name       string        // [DefaultStream]
	Replicas   int           // [1]; a cluster's nodes at most
	MaxAge     time.Duration // records older than this are removed [DefaultMaxAge]
	MaxBytes   int64         // the stream's bytes at most, the oldest removed first [DefaultStreamBytes]
	Duplicates time.Duration // the window within which a message ID is stored once [DefaultDuplicates]
}

// Defaults of StreamConfig.
const (
	DefaultStream      = "CHAINS"
	DefaultMaxAge      = 24 * time.Hour
	DefaultStreamBytes = 1 << 30
	DefaultDuplicates  = 10 * time.Minute
)

func (c *StreamConfig) defaults() {
	if c.Name == "" {
		c.Name = DefaultStream
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultStreamBytes
	}
	if c.Duplicates <= 0 {
		c.Duplicates = DefaultDuplicates
	}
}

// jsConfig is the stream's JetStream configuration.
func (c *StreamConfig) jsConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "chains-sensor records: chains.<host>.<kind>",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		MaxMsgSize:  1 << 20,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Duplicates:  c.Duplicates,
	}
}

// ParseURLs checks a --publish or watch value: nats://HOST:PORT[,nats://HOST:PORT...] (the
// scheme may be left out after the first). It returns the URLs.
func ParseURLs(s string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" || pu.Port() == "" {
			return nil, fmt.Errorf("%q: want nats://HOST:PORT", u)
		}
		if pu.Scheme != "nats" && pu.Scheme != "tls" {
			return nil, fmt.Errorf("%q: the scheme is nats:// (or tls://)", u)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, errors.New("no server: want nats://HOST:PORT[,...]")
	}
	return out, nil
}

// Connect connects to the servers, retrying in the background for ever when none answers now
// (RetryOnFailedConnect): the returned connection is usable either way. logf, when set, hears of
// disconnections and reconnections.
func Connect(urls []string, name string, logf func(format string, args ...any)) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.Timeout(2 * time.Second),
		// Nothing buffered by the client while disconnected: the Publisher keeps what waits.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	if logf != nil {
		opts = append(opts,
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				if err != nil {
					logf("disconnected from %s: %v", nc.ConnectedUrlRedacted(), err)
				}
			}),
			nats.ReconnectHandler(func(nc *nats.Conn) { logf("connected to %s", nc.ConnectedUrlRedacted()) }),
			nats.ConnectHandler(func(nc *nats.Conn) { logf("connected to %s", nc.ConnectedUrlRedacted()) }),
		)
	}
	return nats.Connect(strings.Join(urls, ","), opts...)
}

// JetStream is the Writer for a JetStream stream: asynchronous publishes, each with its
// record's ID as Nats-Msg-Id and the stream's name expected, their acknowledgements (or
// failures, or a timeout) reported to the Handler. It makes the stream when it is not there.
type JetStream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream StreamConfig
	logf   func(format string, args ...any)

	ready    atomic.Bool
	mu       sync.Mutex
	setupErr error
	stop     chan struct{}
	done     chan struct{}
}

// AckTimeout is how long a publish waits for its acknowledgement before it is sent again.
const AckTimeout = 5 * time.Second

// NewJetStream makes the writer on nc (Connect) for the stream sc, reporting to h. It checks for
// (or creates) the stream in the background, now and after each reconnection; until that
// succeeds Ready is false.
func NewJetStream(nc *nats.Conn, sc StreamConfig, h Handler, logf func(format string, args ...any)) (*JetStream, error) {
	sc.defaults()
	j := &JetStream{nc: nc, stream: sc, logf: logf, stop: make(chan struct{}), done: make(chan struct{})}
	if j.logf == nil {
		j.logf = func(string, ...any) {}
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(AckTimeout),
		jetstream.WithPublishAsyncMaxPending(1<<20),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, a *jetstream.PubAck) {
			h.Acked(m.Header.Get(jetstream.MsgIDHeader), a.Duplicate)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			h.Failed(m.Header.Get(jetstream.MsgIDHeader), err)
		}),
	)
	if err != nil {
		return nil, err
	}
	j.js = js
	go j.setup()
	return j, nil
}

// setup makes sure of the stream whenever the connection is (re)established.
func (j *JetStream) setup() {
	defer close(j.done)
	status := j.nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	defer j.nc.RemoveStatusListener(status)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	warned := ""
	for {
		if j.nc.Status() == nats.CONNECTED && !j.ready.Load() {
			err := j.ensureStream()
			j.mu.Lock()
			j.setupErr = err
			j.mu.Unlock()
			if err == nil {
				j.ready.Store(true)
				warned = ""
			} else if err.Error() != warned {
				j.logf("%v", err)
				warned = err.Error()
			}
		}
		select {
		case <-j.stop:
			return
		case s, ok := <-status:
			if !ok || s == nats.CLOSED {
				j.ready.Store(false)
				return
			}
			if s != nats.CONNECTED {
				j.ready.Store(false)
			}
		case <-t.C:
			if j.nc.Status() != nats.CONNECTED {
				j.ready.Store(false)
			}
		}
	}
}

// ensureStream finds the stream or creates it; an error names what is wrong.
func (j *JetStream) ensureStream() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := j.js.Stream(ctx, j.stream.Name)
	if err == nil {
		info := s.CachedInfo()
		if !coversSubjects(info.Config.Subjects, SubjectPrefix+".>") {
			return fmt.Errorf("stream %s exists but does not take the subjects %s.> (its subjects: %s): give another --stream, or add them to it",
				j.stream.Name, SubjectPrefix, strings.Join(info.Config.Subjects, ","))
		}
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", j.stream.Name, err)
	}
	cfg := j.stream.jsConfig()
	if _, err := j.js.CreateStream(ctx, cfg); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Description), "insufficient resources") {
			return fmt.Errorf("creating stream %s with %d replicas: %w (--stream-replicas: at most the cluster's JetStream nodes; --stream-max-bytes: at most their storage)",
				cfg.Name, cfg.Replicas, err)
		}
		if errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Description), "replicas") {
			return fmt.Errorf("creating stream %s with %d replicas: %w (--stream-replicas)", cfg.Name, cfg.Replicas, err)
		}
		return fmt.Errorf("creating stream %s (replicas %d, max age %s, max bytes %d, duplicate window %s): %w",
			cfg.Name, cfg.Replicas, cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates, err)
	}
	j.logf("created stream %s (subjects %s.>, %d replicas, max age %s, max bytes %d, duplicate window %s)",
		cfg.Name, SubjectPrefix, cfg.Replicas, cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates)
	return nil
}

// coversSubjects reports whether one of subjects is want or a wildcard that takes it all.
func coversSubjects(subjects []string, want string) bool {
	for _, s := range subjects {
		if s == want || s == ">" {
			return true
		}
	}
	return false
}

// SetupError returns why the stream could not be found or made, or nil.
func (j *JetStream) SetupError() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.setupErr
}

// Ready reports whether the connection is up and the stream there.
func (j *JetStream) Ready() bool { return j.ready.Load() && j.nc.Status() == nats.CONNECTED }

// Send publishes r asynchronously.
func (j *JetStream) Send(r *Record) error {
	m := &nats.Msg{Subject: r.Subject, Data: r.Data, Header: nats.Header{}}
	_, err := j.js.PublishMsgAsync(m, jetstream.WithMsgID(r.ID), jetstream.WithExpectStream(j.stream.Name))
	return err
}

// Close stops the setup goroutine and closes the connection.
func (j *JetStream) Close() error {
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	<-j.done
	j.nc.Close()
	return nil
}
