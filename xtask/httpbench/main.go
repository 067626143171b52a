// httpbench: the workload `cargo xtask bench` measures the request uprobes
// with. It serves HTTP on loopback in-process and sends -n GETs to it with a
// keep-alive client (net/http's Transport: the probed functions), then prints
// the nanoseconds per request. With -hold it only sleeps: a traced instance that
// keeps the tracer's probes on this executable while untracked instances run.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	n := flag.Int("n", 2000, "requests to send")
	hold := flag.Duration("hold", 0, "only sleep this long")
	flag.Parse()
	if *hold > 0 {
		time.Sleep(*hold)
		return
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(listener, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	url := "http://" + listener.Addr().String() + "/lab.test/mod/@v/v1.0.0.info"
	client := &http.Client{}
	get := func() {
		res, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	// Warm up: the connection, the server goroutine.
	for i := 0; i < 100; i++ {
		get()
	}
	started := time.Now()
	for i := 0; i < *n; i++ {
		get()
	}
	fmt.Println(time.Since(started).Nanoseconds() / int64(*n))
}
