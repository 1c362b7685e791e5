// Command quicpeer is the QUIC client and server of chains-sensor's live QUIC test
// (cmd/chains-sensor/quic_e2e_test.go): a real QUIC stack (quic-go) whose client sends its
// Initials with the server name, ALPN protocol and QUIC version the test asks for. It is its
// own module under testdata, so that quic-go is a dependency of that test alone and never of
// chains-sensor.
//
//	quicpeer -server -addr 10.77.0.1:4443 -alpn h3,hq-interop -timeout 20s
//	quicpeer -addr 10.77.0.1:4443 -sni quic.test -alpn h3 -version 2 -timeout 10s
//
// The server makes a self-signed certificate, says "listening on ADDR" on stdout once bound,
// and echoes each stream of each connection until -timeout ends it (exit 0). The client
// completes the handshake, sends a line on a stream, reads the echo back and prints the
// version and ALPN protocol negotiated ("version 0x00000001 alpn h3"); it exits 1 on any error
// and whatever happens within -timeout.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
)

func main() {
	server := flag.Bool("server", false, "listen rather than dial")
	addr := flag.String("addr", "", "address to listen on or dial (host:port)")
	sni := flag.String("sni", "", "client: the server name its ClientHello carries")
	alpn := flag.String("alpn", "h3", "the ALPN protocol the client offers, or the comma-separated list the server accepts")
	version := flag.Int("version", 1, "client: the QUIC version it speaks, 1 (RFC 9000) or 2 (RFC 9369)")
	timeout := flag.Duration("timeout", 10*time.Second, "how long the whole run may last")
	flag.Parse()
	if *addr == "" || (!*server && *sni == "") {
		fmt.Fprintln(os.Stderr, "usage: quicpeer [-server] -addr HOST:PORT [-sni NAME] [-alpn PROTO] [-version 1|2] [-timeout D]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var err error
	if *server {
		err = serve(ctx, *addr, *alpn)
	} else {
		err = dial(ctx, *addr, *sni, *alpn, *version)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quicpeer:", err)
		os.Exit(1)
	}
}

// dial connects, round-trips one line on a stream and prints what was negotiated.
func dial(ctx context.Context, addr, sni, alpn string, version int) error {
	v := quic.Version1
	switch version {
	case 1:
	case 2:
		v = quic.Version2
	default:
		return fmt.Errorf("version %d: want 1 or 2", version)
	}
	tc := &tls.Config{ServerName: sni, NextProtos: []string{alpn}, InsecureSkipVerify: true}
	conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{Versions: []quic.Version{v}})
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	msg := []byte("hello from quicpeer\n")
	if _, err := st.Write(msg); err != nil {
		return err
	}
	st.Close()
	if d, ok := ctx.Deadline(); ok {
		st.SetReadDeadline(d)
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	cs := conn.ConnectionState()
	fmt.Printf("version 0x%08x alpn %s\n", uint32(cs.Version), cs.TLS.NegotiatedProtocol)
	return nil
}

// serve accepts connections and echoes their streams until ctx ends.
func serve(ctx context.Context, addr, alpn string) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: strings.Split(alpn, ",")}
	ln, err := quic.ListenAddr(addr, tc, &quic.Config{Versions: []quic.Version{quic.Version1, quic.Version2}})
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Printf("listening on %s\n", ln.Addr())
	for {
		conn, err := ln.Accept(ctx)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil
		}
		if err != nil {
			return err
		}
		go func() {
			for {
				st, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				go func() {
					io.Copy(st, io.LimitReader(st, 1<<16))
					st.Close()
				}()
			}
		}()
	}
}

// selfSigned makes a P-256 certificate for quicpeer.test, valid for a day.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quicpeer.test"},
		DNSNames:     []string{"quicpeer.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
