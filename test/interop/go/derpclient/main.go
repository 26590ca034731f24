// Command derpclient is a small interop peer for wiremesh tests: a real Go
// tailscale.com/derp/derphttp client driven by flags, reporting what it does
// as one JSON object per line on stdout.
//
// Output lines:
//
//	{"event":"ready","publicKey":"nodekey:…","serverKey":"nodekey:…","tls":true,"fastStart":true}
//	{"event":"sent","count":N}
//	{"event":"recv","source":"nodekey:…","data":"<base64>"}
//	{"event":"ping","rttMs":1.23}
//	{"event":"done"}
//
// The program exits 0 once it has sent -count packets, received -recv
// packets and completed -pings pings, or 1 on error/timeout.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

var outMu sync.Mutex

func emit(v map[string]any) {
	outMu.Lock()
	defer outMu.Unlock()
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func fail(format string, args ...any) {
	emit(map[string]any{"event": "error", "error": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

func main() {
	serverURL := flag.String("url", "", "DERP URL, http(s)://host:port/derp")
	privText := flag.String("key", "", "private key (privkey:…); random if empty")
	insecure := flag.Bool("insecure", false, "skip TLS verification (InsecureForTests)")
	caFile := flag.String("ca", "", "PEM CA file to trust for TLS")
	to := flag.String("to", "", "peer public key (nodekey:…) to send to")
	count := flag.Int("count", 0, "packets to send to -to")
	data := flag.String("data", "hello from go", "packet payload prefix (a sequence number is appended)")
	waitPeer := flag.Duration("send-delay", 0, "delay before sending")
	recvN := flag.Int("recv", 0, "packets to receive before exiting")
	pings := flag.Int("pings", 0, "number of Ping round trips")
	timeout := flag.Duration("timeout", 20*time.Second, "overall timeout")
	flag.Parse()

	if *serverURL == "" {
		fail("-url is required")
	}
	var priv key.NodePrivate
	if *privText == "" {
		priv = key.NewNode()
	} else if err := priv.UnmarshalText([]byte(*privText)); err != nil {
		fail("bad -key: %v", err)
	}
	u, err := url.Parse(*serverURL)
	if err != nil {
		fail("bad -url: %v", err)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
	netMon := netmon.NewStatic()

	var c *derphttp.Client
	if u.Scheme == "https" && *insecure {
		// A one-node region with InsecureForTests, as tests' DERP maps do.
		port, _ := strconv.Atoi(u.Port())
		node := &tailcfg.DERPNode{Name: "1a", RegionID: 900, HostName: u.Hostname(), DERPPort: port, InsecureForTests: true}
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() != nil {
			node.IPv4 = u.Hostname()
		} else if ip != nil {
			node.IPv6 = u.Hostname()
		}
		region := &tailcfg.DERPRegion{RegionID: 900, RegionCode: "test", Nodes: []*tailcfg.DERPNode{node}}
		c = derphttp.NewRegionClient(priv, logf, netMon, func() *tailcfg.DERPRegion { return region })
	} else {
		c, err = derphttp.NewClient(priv, *serverURL, logf, netMon)
		if err != nil {
			fail("NewClient: %v", err)
		}
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				fail("read -ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				fail("no certificates in %s", *caFile)
			}
			c.TLSConfig = &tls.Config{RootCAs: pool}
		}
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		fail("connect: %v", err)
	}
	cs, isTLS := c.TLSConnectionState()
	// The preconditions derphttp checks before fast start (spec §3.3): TLS ≥ 1.3 and a
	// "derpkey<hex>" meta certificate somewhere in the served chain.
	metaCert := false
	tlsVersion := ""
	if isTLS && cs != nil {
		tlsVersion = tls.VersionName(cs.Version)
		for _, cert := range cs.PeerCertificates {
			if strings.HasPrefix(cert.Subject.CommonName, "derpkey") {
				metaCert = true
			}
		}
	}
	emit(map[string]any{
		"event":      "ready",
		"publicKey":  priv.Public().String(),
		"serverKey":  c.ServerPublicKey().String(),
		"tls":        isTLS,
		"tlsVersion": tlsVersion,
		"fastStart":  metaCert && cs != nil && cs.Version >= tls.VersionTLS13,
	})

	received := make(chan struct{}, 1024)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := c.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			switch m := m.(type) {
			case derp.ReceivedPacket:
				emit(map[string]any{"event": "recv", "source": m.Source.String(), "data": m.Data})
				received <- struct{}{}
			case derp.PeerGoneMessage:
				emit(map[string]any{"event": "peerGone", "key": m.Peer.String(), "reason": int(m.Reason)})
			case derp.ServerInfoMessage:
				emit(map[string]any{"event": "serverInfo"})
			}
		}
	}()

	if *count > 0 {
		var dst key.NodePublic
		if err := dst.UnmarshalText([]byte(*to)); err != nil {
			fail("bad -to: %v", err)
		}
		time.Sleep(*waitPeer)
		for i := 0; i < *count; i++ {
			if err := c.Send(dst, []byte(fmt.Sprintf("%s %d", *data, i))); err != nil {
				fail("send: %v", err)
			}
		}
		emit(map[string]any{"event": "sent", "count": *count})
	}

	for i := 0; i < *pings; i++ {
		start := time.Now()
		if err := c.Ping(ctx); err != nil {
			fail("ping: %v", err)
		}
		emit(map[string]any{"event": "ping", "rttMs": float64(time.Since(start).Microseconds()) / 1000})
	}

	for got := 0; got < *recvN; got++ {
		select {
		case <-received:
		case err := <-recvErr:
			fail("recv: %v", err)
		case <-ctx.Done():
			fail("timeout after receiving %d of %d packets", got, *recvN)
		}
	}
	emit(map[string]any{"event": "done"})
}
