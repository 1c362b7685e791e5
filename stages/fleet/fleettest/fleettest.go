// Package fleettest runs Debian's nats-server for tests: one node, or a JetStream cluster of
// several, on loopback ports (in the caller's network namespace, or in one a test made), each
// node stoppable and restartable with its store kept, and removed when the test ends.
package fleettest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chains-sensor/chains-sensor/sensor/sensortest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Node is one nats-server.
type Node struct {
	Name       string
	ClientPort int
	conf       string
	log        string
	wrap       func(context.Context, string, ...string) *exec.Cmd

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Cluster is a set of nodes (one for a lone server).
type Cluster struct {
	Nodes []*Node
	Host  string // the address the clients use
}

// Options say where and how the servers run.
type Options struct {
	Nodes int // 1: a lone server, else a cluster of this many
	// Command makes the command that runs a node (nil: exec.CommandContext): a test's
	// namespace runs it with sensortest.Netns.Command.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Host is the address the servers listen on [127.0.0.1]; BasePort the first of the ports
	// (client ports BasePort.., cluster ports BasePort+100..) [free ports found here].
	Host     string
	BasePort int
}

// Start starts the servers and waits (bounded) until JetStream answers.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	sensortest.RequireTools(t, "nats-server")
	if o.Nodes <= 0 {
		o.Nodes = 1
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	dir := t.TempDir()
	c := &Cluster{Host: o.Host}
	ports := make([]int, 2*o.Nodes)
	for i := range ports {
		if o.BasePort != 0 {
			ports[i] = o.BasePort + i%o.Nodes + 100*(i/o.Nodes)
		} else {
			ports[i] = freePort(t)
		}
	}
	for i := 0; i < o.Nodes; i++ {
		n := &Node{Name: fmt.Sprintf("n%d", i+1), ClientPort: ports[i], wrap: o.Command}
		n.conf = filepath.Join(dir, n.Name+".conf")
		n.log = filepath.Join(dir, n.Name+".log")
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: %s:%d\n", n.Name, o.Host, n.ClientPort)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n", filepath.Join(dir, n.Name))
		if o.Nodes > 1 {
			var routes []string
			for j := 0; j < o.Nodes; j++ {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://%s:%d", o.Host, ports[o.Nodes+j]))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: chains\n  listen: %s:%d\n  routes: [%s]\n}\n", o.Host, ports[o.Nodes+i], strings.Join(routes, ", "))
		}
		if err := os.WriteFile(n.conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		n.Start(t)
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill()
		}
	})
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URLs returns the nats:// URLs of every node, comma-separated.
func (c *Cluster) URLs() string {
	var u []string
	for _, n := range c.Nodes {
		u = append(u, fmt.Sprintf("nats://%s:%d", c.Host, n.ClientPort))
	}
	return strings.Join(u, ",")
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Start starts the node (again: its store is kept).
func (n *Node) Start(t testing.TB) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return
	}
	log, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mk := n.wrap
	if mk == nil {
		mk = exec.CommandContext
	}
	cmd := mk(context.Background(), "nats-server", "-c", n.conf)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("nats-server %s: %v", n.Name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		log.Close()
		close(done)
	}(n.done)
}

// Kill stops the node at once (SIGKILL) and waits for it.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Log returns what the node wrote.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.log)
	return string(b)
}

// Logs returns every node's log, for a failure message.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		log := n.Log()
		if len(log) > 4000 {
			log = "..." + log[len(log)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", n.Name, log)
	}
	return b.String()
}

// Dial connects to the cluster as a test client; dial, when set, makes the connections (in a
// test's namespace: sensortest.Netns.Do around net.Dial).
func (c *Cluster) Dial(t testing.TB, dial nats.CustomDialer) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(200 * time.Millisecond), nats.RetryOnFailedConnect(true)}
	if dial != nil {
		opts = append(opts, nats.SetCustomDialer(dial))
	}
	nc, err := nats.Connect(c.URLs(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// WaitJetStream waits (bounded) until JetStream answers on nc (a cluster: its meta leader is
// elected).
func (c *Cluster) WaitJetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream does not answer: %v\n%s", err, c.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Relay makes the cluster's client ports answer on the loopback of ns too (the same
// addresses, so the URLs and the servers' advertised peers hold there): each connection
// accepted in ns is carried to the node's port here, byte for byte, until either side closes.
// A stopped node refuses there as it does here. Everything is closed when the test ends.
func (c *Cluster) Relay(t testing.TB, ns *sensortest.Netns) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	track := func(cs ...net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if conns == nil {
			return false // closed
		}
		conns = append(conns, cs...)
		return true
	}
	conns = []net.Conn{}
	for _, n := range c.Nodes {
		addr := net.JoinHostPort(c.Host, fmt.Sprint(n.ClientPort))
		var ln net.Listener
		if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatalf("relay %s in %s: %v", addr, ns.Name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				down, err := ln.Accept()
				if err != nil {
					return
				}
				up, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil || !track(down, up) {
					down.Close()
					if up != nil {
						up.Close()
					}
					continue
				}
				go pipe(down, up)
				go pipe(up, down)
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	})
}

// pipe copies from src to dst, then closes both.
func pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}
