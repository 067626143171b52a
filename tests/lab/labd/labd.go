// Command labd runs the lab's servers in the server network namespace: module
// proxies (healthy, failing with a status, stalling, slow, HTTP/1.1 only), a real
// checksum database (golang.org/x/mod/sumdb), a vanity import host and a git
// server over HTTPS (git http-backend), an HTTP CONNECT proxy, a TLS tarpit, a TLS
// server whose certificate comes from a CA the client does not trust, and DNS
// resolvers that answer AAAA queries unlike dnsmasq (dns.go), and a module proxy
// that serves a directory (files, given -files: the real-download benchmark's).
//
// Each server is one listener on its own address, given as
// -serve name,ip:port,behaviour; the lab gives every name its own IP so that
// firewall faults can hit one service and spare the others. The behaviour
// "closed" listens on nothing: the name has an address (and a DNS record) where
// the port refuses connections.
//
// Built in GOPATH mode against Debian's golang-golang-x-mod-dev
// (GO111MODULE=off GOPATH=/usr/share/gocode) with Go 1.19; nothing is fetched.
package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
)

const version = "v1.0.0"
const info = `{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`

// Modules served by stalling and slow proxies carry this much incompressible data.
const bigModulePadding = 256 << 10

type module struct {
	files map[string][]byte // file name → contents, as in the module's root
	mod   []byte
	zip   []byte
}

func makeModule(path string, padding int) module {
	pkg := path[strings.LastIndex(path, "/")+1:]
	gomod := []byte(fmt.Sprintf("module %s\n\ngo 1.19\n", path))
	files := map[string][]byte{
		"go.mod":    gomod,
		pkg + ".go": []byte(fmt.Sprintf("package %s\n\n// Name is the module's name.\nconst Name = %q\n", pkg, path)),
		"LICENSE":   []byte("lab module, no rights reserved\n"),
	}
	if padding > 0 {
		data := make([]byte, padding)
		rand.Read(data)
		files["data.bin"] = data
	}
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for name, body := range files {
		f, err := w.Create(path + "@" + version + "/" + name)
		if err != nil {
			log.Fatal(err)
		}
		f.Write(body)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	return module{files: files, mod: gomod, zip: buf.Bytes()}
}

// certificate makes a CA and a server certificate for names and ips, signed by it.
func certificate(caName string, names []string, ips []net.IP) (tls.Certificate, []byte) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: caName},
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
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, pemCA
}

// proxyHandler serves modules with the GOPROXY protocol. sumdbName/sumdbHandler,
// when set, make it proxy that checksum database under /sumdb/<name>/ (answering
// 200 to /sumdb/<name>/supported); otherwise /sumdb/ paths get 404, as
// proxy.golang.org answers for other databases. writeZip sends a zip.
//
// A path prefix may come before the module path or sumdb/ (see splitPrefix), so
// that one host can be several GOPROXY entries: https://proxy.lab.test/a serves
// as https://proxy.lab.test does (/a/lab.test/mod01/@v/list, /a/sumdb/<name>/…).
// A prefix whose first element is "gone" answers 404 to everything (a proxy that
// does not have the module: cmd/go falls through to the next entry), one whose
// first element is "status-NNN" answers status NNN to everything.
func proxyHandler(modules map[string]module, sumdbName string, sumdbHandler http.Handler, writeZip func(http.ResponseWriter, *http.Request, []byte)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix, path := splitPrefix(strings.TrimPrefix(r.URL.Path, "/"))
		first, _, _ := strings.Cut(prefix, "/")
		if first == "gone" {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(first, "status-") {
			var status int
			if _, err := fmt.Sscanf(strings.TrimPrefix(first, "status-"), "%d", &status); err != nil || status < 100 || status > 999 {
				http.Error(w, "bad status prefix", http.StatusBadRequest)
				return
			}
			http.Error(w, http.StatusText(status), status)
			return
		}
		if strings.HasPrefix(path, "sumdb/") {
			rest := strings.TrimPrefix(path, "sumdb/")
			name, sub, _ := strings.Cut(rest, "/")
			if sumdbHandler == nil || name != sumdbName {
				http.NotFound(w, r)
				return
			}
			if sub == "supported" {
				w.WriteHeader(http.StatusOK)
				return
			}
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + sub
			sumdbHandler.ServeHTTP(w, r2)
			return
		}
		if strings.HasSuffix(path, "/@latest") {
			mod := strings.TrimSuffix(path, "/@latest")
			if _, found := modules[mod]; found {
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
			w.Header().Set("Content-Length", fmt.Sprint(len(m.zip)))
			writeZip(w, r, m.zip)
		default:
			http.NotFound(w, r)
		}
	})
}

// splitPrefix splits a proxy request path (without its leading slash) into the
// prefix and the rest: the prefix is the leading elements before the first that
// contains a dot (a module path's first element always does: lab.test) or is
// "sumdb". "a/b/lab.test/mod01/@v/list" → "a/b", "lab.test/mod01/@v/list";
// paths without a prefix are returned unchanged.
func splitPrefix(path string) (prefix, rest string) {
	elems := strings.Split(path, "/")
	i := 0
	for i < len(elems)-1 && elems[i] != "sumdb" && !strings.Contains(elems[i], ".") {
		i++
	}
	return strings.Join(elems[:i], "/"), strings.Join(elems[i:], "/")
}

func writeAll(w http.ResponseWriter, _ *http.Request, data []byte) { w.Write(data) }

// writeThenStall sends a quarter of the body and then nothing, until the client
// goes away (cmd/go has no response timeout: the build hangs). Served over TLS
// (stall) and over plain HTTP (stall+plain).
func writeThenStall(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Write(data[:len(data)/4])
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// writeSlowly sends 16 KiB every 250 ms: 64 KiB/s per response.
func writeSlowly(w http.ResponseWriter, r *http.Request, data []byte) {
	for len(data) > 0 {
		n := len(data)
		if n > 16<<10 {
			n = 16 << 10
		}
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		data = data[n:]
		select {
		case <-time.After(250 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
}

// gosum computes the go.sum lines the checksum database serves for a module.
func gosum(modules map[string]module, dir string) func(path, vers string) ([]byte, error) {
	var mu sync.Mutex
	return func(path, vers string) ([]byte, error) {
		m, found := modules[path]
		if !found || vers != version {
			return nil, os.ErrNotExist
		}
		mu.Lock()
		defer mu.Unlock()
		zipFile := filepath.Join(dir, strings.ReplaceAll(path, "/", "_")+".zip")
		if err := os.WriteFile(zipFile, m.zip, 0o644); err != nil {
			return nil, err
		}
		zipHash, err := dirhash.HashZip(zipFile, dirhash.Hash1)
		if err != nil {
			return nil, err
		}
		modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(m.mod)), nil
		})
		if err != nil {
			return nil, err
		}
		return []byte(fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, vers, zipHash, path, vers, modHash)), nil
	}
}

// makeRepos creates a bare git repository per module under dir, holding the
// same files as the proxy serves, tagged v1.0.0.
func makeRepos(dir string, modules map[string]module, names []string) {
	git := func(wd string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = wd
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=lab", "GIT_AUTHOR_EMAIL=lab@lab.test",
			"GIT_COMMITTER_NAME=lab", "GIT_COMMITTER_EMAIL=lab@lab.test",
			"GIT_AUTHOR_DATE=2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2024-01-01T00:00:00Z",
			"GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	for _, path := range names {
		m := modules[path]
		name := path[strings.LastIndex(path, "/")+1:]
		work := filepath.Join(dir, "work", name)
		os.MkdirAll(work, 0o755)
		for file, body := range m.files {
			os.WriteFile(filepath.Join(work, file), body, 0o644)
		}
		git(work, "init", "-q", "-b", "main")
		git(work, "add", ".")
		git(work, "commit", "-q", "-m", "lab module "+path)
		git(work, "tag", version)
		git(dir, "clone", "-q", "--bare", work, filepath.Join(dir, name+".git"))
	}
}

// gitExecPath is where the git on PATH keeps its helpers (git-http-backend).
func gitExecPath() string {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		log.Fatalf("git --exec-path: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// vanityHandler answers `?go-get=1` for host/<name> with a go-import tag that
// points at the git server.
func vanityHandler(gitHost string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("go-get") != "1" {
			http.NotFound(w, r)
			return
		}
		name := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
		fmt.Fprintf(w, "<html><head><meta name=\"go-import\" content=\"%s/%s git https://%s/%s.git\"></head></html>\n",
			r.Host, name, gitHost, name)
	})
}

// connectProxy tunnels CONNECT requests to the lab's names; with auth set it
// requires Proxy-Authorization: Basic <auth>.
func connectProxy(hosts map[string]string, auth string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "this proxy only tunnels (CONNECT)", http.StatusMethodNotAllowed)
			return
		}
		if auth != "" && r.Header.Get("Proxy-Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte(auth)) {
			w.Header().Set("Proxy-Authenticate", `Basic realm="lab"`)
			http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
			return
		}
		host, port, err := net.SplitHostPort(r.Host)
		ip, known := hosts[host]
		if err != nil || !known {
			http.Error(w, "unknown host", http.StatusBadGateway)
			return
		}
		upstream, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), 5*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		client, buffered, err := w.(http.Hijacker).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() {
			io.Copy(upstream, buffered)
			upstream.Close()
		}()
		io.Copy(client, upstream)
		client.Close()
	})
}

// tarpit accepts connections and never answers.
func tarpit(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// servfail answers every DNS query on addr with SERVFAIL: the upstream that the
// lab's dnsmasq forwards one zone to, so that dnsmasq relays the failure.
func servfail(addr string) {
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				log.Fatal(err)
			}
			if n < 12 {
				continue
			}
			answer := append([]byte(nil), buf[:n]...)
			answer[2] = 0x80 | answer[2]&0x79 // QR, keep opcode and RD
			answer[3] = 0x80 | 2              // RA, RCODE=SERVFAIL
			conn.WriteTo(answer, from)
		}
	}()
}

type serveFlag []string

func (s *serveFlag) String() string     { return strings.Join(*s, " ") }
func (s *serveFlag) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var serve serveFlag
	flag.Var(&serve, "serve", "name,ip:port,behaviour (repeatable): proxy, proxy-h1, mirror, sumdb, status:NNN, stall, slow, vanity, git, connect, connect-auth, tarpit, untrusted, files, closed, dns:refuse-aaaa, dns:empty-aaaa, dns:silent; add +plain for HTTP without TLS")
	caOut := flag.String("ca", "ca.pem", "where to write the trusted CA certificate")
	keyOut := flag.String("sumdb-key", "sumdb.key", "where to write the checksum database's verifier key")
	sumdbName := flag.String("sumdb-name", "sum.lab.test", "the checksum database's name")
	count := flag.Int("modules", 24, "how many modules to serve (lab.test/modNN)")
	reposDir := flag.String("repos", "repos", "directory for the git repositories")
	gitModules := flag.String("git-modules", "lab.test/mod01,lab.test/mod02,lab.test/private", "modules the git server has")
	proxyAuth := flag.String("proxy-auth", "", "user:password the connect-auth proxy requires")
	servfailAddr := flag.String("dns-servfail", "", "ip:port where every DNS query gets SERVFAIL")
	ready := flag.String("ready", "", "file to create once listening")
	filesDir := flag.String("files", "", "the GOPROXY file tree the files behaviour serves")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	modules, big := map[string]module{}, map[string]module{}
	for i := 1; i <= *count; i++ {
		path := fmt.Sprintf("lab.test/mod%02d", i)
		modules[path] = makeModule(path, 0)
		big[path] = makeModule(path, bigModulePadding)
	}
	// The private module is only in git, never in a proxy or the checksum database.
	withPrivate := map[string]module{"lab.test/private": makeModule("lab.test/private", 0)}
	for k, v := range modules {
		withPrivate[k] = v
	}

	hosts := map[string]string{}
	var names []string
	var ips []net.IP
	var gitHost string
	for _, s := range serve {
		parts := strings.Split(s, ",")
		host, _, _ := net.SplitHostPort(parts[1])
		hosts[parts[0]] = host
		if parts[2] == "git" {
			gitHost = parts[0]
		}
		if !strings.HasPrefix(parts[2], "untrusted") {
			names = append(names, parts[0])
			ips = append(ips, net.ParseIP(host))
		}
	}
	trusted, caPEM := certificate("gomod-trace lab CA", names, ips)
	if err := os.WriteFile(*caOut, caPEM, 0o644); err != nil {
		log.Fatal(err)
	}

	skey, vkey, err := note.GenerateKey(rand.Reader, *sumdbName)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*keyOut, []byte(vkey+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	os.MkdirAll(*reposDir, 0o755)
	sumdbHandler := sumdb.NewServer(sumdb.NewTestServer(skey, gosum(modules, *reposDir)))
	makeRepos(*reposDir, withPrivate, strings.Split(*gitModules, ","))

	if *servfailAddr != "" {
		servfail(*servfailAddr)
	}
	var wg sync.WaitGroup
	for _, s := range serve {
		parts := strings.Split(s, ",")
		name, addr, behaviour := parts[0], parts[1], parts[2]
		plain := strings.HasSuffix(behaviour, "+plain")
		behaviour = strings.TrimSuffix(behaviour, "+plain")
		if strings.HasPrefix(behaviour, "dns:") {
			serveDNS(addr, strings.TrimPrefix(behaviour, "dns:"), hosts)
			continue
		}
		if behaviour == "closed" {
			// Nothing listens: connections to the port are refused (RST).
			continue
		}
		cert := trusted
		var handler http.Handler
		http1Only := false
		switch {
		case behaviour == "proxy":
			handler = proxyHandler(modules, "", nil, writeAll)
		case behaviour == "proxy-h1":
			// The same proxy, HTTP/1.1 only: ALPN offers no h2.
			handler, http1Only = proxyHandler(modules, "", nil, writeAll), true
		case behaviour == "mirror":
			handler = proxyHandler(modules, *sumdbName, sumdbHandler, writeAll)
		case behaviour == "stall":
			handler = proxyHandler(big, "", nil, writeThenStall)
		case behaviour == "slow":
			handler = proxyHandler(big, "", nil, writeSlowly)
		case behaviour == "sumdb":
			handler = sumdbHandler
		case strings.HasPrefix(behaviour, "status:"):
			var code int
			fmt.Sscanf(strings.TrimPrefix(behaviour, "status:"), "%d", &code)
			handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, http.StatusText(code), code)
			})
		case behaviour == "vanity":
			handler = vanityHandler(gitHost)
		case behaviour == "git":
			handler = &cgi.Handler{
				Path: filepath.Join(gitExecPath(), "git-http-backend"),
				Env:  []string{"GIT_PROJECT_ROOT=" + *reposDir, "GIT_HTTP_EXPORT_ALL=1"},
			}
		case behaviour == "connect":
			handler, plain = connectProxy(hosts, ""), true
		case behaviour == "connect-auth":
			handler, plain = connectProxy(hosts, *proxyAuth), true
		case behaviour == "untrusted":
			// A certificate for the right name from a CA nobody trusts: what a
			// TLS-intercepting middlebox presents.
			cert, _ = certificate("middlebox CA", []string{name}, nil)
			handler = proxyHandler(modules, "", nil, writeAll)
		case behaviour == "files":
			// A module proxy that is a directory (tests/lab/corpus writes one):
			// the real-download benchmark's modules.
			handler = http.FileServer(http.Dir(*filesDir))
		case behaviour == "tarpit":
		default:
			log.Fatalf("unknown behaviour %q", behaviour)
		}
		listener, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if handler == nil {
				tarpit(listener)
				return
			}
			server := &http.Server{Handler: handler, BaseContext: func(net.Listener) context.Context { return context.Background() }}
			if http1Only {
				// A non-nil empty map: ServeTLS does not configure HTTP/2 (the
				// other TLS servers negotiate h2 with clients that offer it).
				server.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
			}
			if plain {
				log.Fatal(server.Serve(listener))
			}
			server.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
			log.Fatal(server.ServeTLS(listener, "", ""))
		}()
	}
	if *ready != "" {
		os.WriteFile(*ready, []byte("ok\n"), 0o644)
	}
	wg.Wait()
}
