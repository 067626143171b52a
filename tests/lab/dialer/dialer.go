// Command lab-dialer dials the TCP addresses given on its command line
// concurrently, one goroutine each (started together, 10 s dial timeout), and
// prints one line per address, in the order given, once all are done:
//
//	ADDR<TAB>ok<TAB>12.3ms
//	ADDR<TAB>error<TAB>12.3ms<TAB>MESSAGE
//
// It exits 0 whatever the outcomes (2 without arguments). A connection that
// succeeds is closed at once. The lab traces it with `gomod-trace run
// --go-command lab-dialer`: one process whose concurrent connects may each fail
// in their own way (refused, unreachable, timed out).
//
// Built like labd: GO111MODULE=off with Debian's Go 1.19; no dependencies.
package main

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

func main() {
	addrs := os.Args[1:]
	if len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "usage: lab-dialer HOST:PORT...")
		os.Exit(2)
	}
	results := make([]string, len(addrs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func(i int, addr string) {
			defer wg.Done()
			<-start
			began := time.Now()
			conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
			elapsed := float64(time.Since(began).Microseconds()) / 1000
			if err != nil {
				results[i] = fmt.Sprintf("%s\terror\t%.1fms\t%v", addr, elapsed, err)
				return
			}
			conn.Close()
			results[i] = fmt.Sprintf("%s\tok\t%.1fms", addr, elapsed)
		}(i, addr)
	}
	close(start)
	wg.Wait()
	for _, line := range results {
		fmt.Println(line)
	}
}
