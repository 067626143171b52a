// A small program that links the go command's HTTP client types, built by
// gomod-trace/tests/gobin.rs with every installed toolchain so that the offsets
// table and the pclntab reader can be checked against its DWARF and symbol table.
// It is built, never run against a network: with no argument it only prints.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
)

func fetch(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return fmt.Errorf("dial: %w", opErr)
		}
		return err
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.ProtoMajor, resp.ProtoMinor)
	return nil
}

func dialTLS(addr string) error {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	conn := tls.Client(raw, &tls.Config{ServerName: "example.test"})
	defer conn.Close()
	if tcp, ok := raw.(*net.TCPConn); ok {
		f, err := tcp.File()
		if err == nil {
			f.Close()
		}
	}
	return conn.Handshake()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: gohttp URL [TLS-ADDR]")
		return
	}
	if err := fetch(os.Args[1]); err != nil {
		fmt.Println(err)
	}
	if len(os.Args) > 2 {
		if err := dialTLS(os.Args[2]); err != nil {
			fmt.Println(err)
		}
	}
}
