// Program testcontrol is a wiremesh interop helper: a toy Tailscale control server
// (tailscale.com/tstest/integration/testcontrol v1.102.3, used as a library) that listens on an
// ephemeral loopback port and hands its nodes a DERP map naming one wiremesh derper.
//
// It exists because cmd/testcontrol binds the fixed port 127.0.0.1:9911 and always ships its own
// embedded DERP server; tests here need neither. It prints exactly one line on stdout,
// "control: listening http://HOST:PORT", then serves until killed.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "control server listen address")
	derpHost := flag.String("derp-host", "127.0.0.1", "DERP node HostName (and IPv4 when it is an IP)")
	derpPort := flag.Int("derp-port", 0, "DERP node port (0: no DERP map, which means the production map)")
	stunPort := flag.Int("stun-port", -1, "DERP node STUN port (-1: STUN disabled)")
	insecure := flag.Bool("insecure-tls", false, "set InsecureForTests on the DERP node (self-signed TLS)")
	certName := flag.String("cert-name", "", `DERP node CertName, e.g. "sha256-raw:<hex>" to pin a self-signed cert`)
	regionID := flag.Int("region", 900, "DERP region ID")
	verbose := flag.Bool("v", false, "log control traffic to stderr")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	srv := &testcontrol.Server{ExplicitBaseURL: base, Verbose: *verbose}
	if *derpPort != 0 {
		node := &tailcfg.DERPNode{
			Name:             fmt.Sprintf("%da", *regionID),
			RegionID:         *regionID,
			HostName:         *derpHost,
			DERPPort:         *derpPort,
			STUNPort:         *stunPort,
			InsecureForTests: *insecure,
			CertName:         *certName,
		}
		if ip := net.ParseIP(*derpHost); ip != nil && ip.To4() != nil {
			node.IPv4 = *derpHost
		}
		srv.DERPMap = &tailcfg.DERPMap{
			OmitDefaultRegions: true,
			Regions: map[int]*tailcfg.DERPRegion{*regionID: {
				RegionID:   *regionID,
				RegionCode: "wiremesh",
				RegionName: "wiremesh derper",
				Nodes:      []*tailcfg.DERPNode{node},
			}},
		}
	}
	fmt.Fprintf(os.Stdout, "control: listening %s\n", base)
	log.Fatal(http.Serve(ln, srv))
}
