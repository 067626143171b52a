// Command goproxy is the lab's module proxy: it generates a CA and a server
// certificate, generates modules, and serves them over TLS with the GOPROXY
// protocol (@v/list, .info, .mod, .zip, @latest). Standard library only.
package main

import (
	"archive/zip"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

type module struct {
	mod []byte
	zip []byte
}

const version = "v1.0.0"
const info = `{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`

func makeModule(path string) module {
	gomod := []byte(fmt.Sprintf("module %s\n\ngo 1.19\n", path))
	pkg := path[strings.LastIndex(path, "/")+1:]
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	prefix := path + "@" + version + "/"
	for name, body := range map[string][]byte{
		"go.mod":    gomod,
		pkg + ".go": []byte(fmt.Sprintf("package %s\n\n// Name is the module's name.\nconst Name = %q\n", pkg, path)),
		"LICENSE":   []byte("lab module, no rights reserved\n"),
	} {
		f, err := w.Create(prefix + name)
		if err != nil {
			log.Fatal(err)
		}
		f.Write(body)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	return module{mod: gomod, zip: buf.Bytes()}
}

func certificates(names []string, ip net.IP, caOut string) tls.Certificate {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gomod-trace lab CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(caOut, pemCA, 0o644); err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	names := flag.String("names", "proxy.lab.test", "comma-separated server names for the certificate")
	caOut := flag.String("ca", "ca.pem", "where to write the CA certificate")
	count := flag.Int("modules", 24, "how many modules to serve (lab.test/modNN)")
	ready := flag.String("ready", "", "file to create once listening")
	flag.Parse()

	modules := map[string]module{}
	for i := 1; i <= *count; i++ {
		path := fmt.Sprintf("lab.test/mod%02d", i)
		modules[path] = makeModule(path)
	}
	host, _, _ := net.SplitHostPort(*addr)
	cert := certificates(strings.Split(*names, ","), net.ParseIP(host), *caOut)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/")
		if strings.HasSuffix(path, "/@latest") {
			if _, found := modules[strings.TrimSuffix(path, "/@latest")]; found {
				w.Write([]byte(info))
				return
			}
		}
		mod, file, ok := strings.Cut(path, "/@v/")
		m, found := modules[mod]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		switch file {
		case "list":
			w.Write([]byte(version + "\n"))
		case version + ".info":
			w.Write([]byte(info))
		case version + ".mod":
			w.Write(m.mod)
		case version + ".zip":
			w.Header().Set("Content-Type", "application/zip")
			w.Write(m.zip)
		default:
			http.NotFound(w, r)
		}
	})
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *ready != "" {
		os.WriteFile(*ready, []byte("ok\n"), 0o644)
	}
	server := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	log.Fatal(server.ServeTLS(listener, "", ""))
}
