// The Go peer for the load test: the net/http server a Go developer would write, a goroutine per
// connection on the Go scheduler (GOMAXPROCS set by the runner), serving gearbox's echo-mode
// endpoints: GET /plaintext, GET /health, GET /delay/<ms> (time.Sleep: the goroutine parks, its
// thread serves others), GET /cpu/<ms> (that much calibrated computation on the goroutine's
// thread), and any request with a body echoed back with its Content-Type. Built by loadtest/run.py.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// burn runs n steps of the same xorshift loop as gearbox's /cpu.
func burn(n uint64) uint64 {
	x := uint64(0x9e3779b97f4a7c15)
	for i := uint64(0); i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

var sink uint64

// calibrate: loop steps per millisecond, the best of a few 20 ms trials (a busy machine only
// makes a trial slower, never faster).
func calibrate() uint64 {
	const n = 2000000
	best := time.Duration(1 << 62)
	for i := 0; i < 10; i++ {
		t := time.Now()
		sink += burn(n)
		if d := time.Since(t); d < best {
			best = d
		}
	}
	perMs := uint64(float64(n) / (float64(best) / float64(time.Millisecond)))
	if perMs == 0 {
		perMs = 1
	}
	return perMs
}

func msIn(path, prefix string) (int, bool) {
	ms, err := strconv.Atoi(strings.TrimPrefix(path, prefix))
	return ms, err == nil && ms >= 0 && ms <= 60000
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	perMs := calibrate()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-peer: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "go-peer: listening on %s (net/http)\n", ln.Addr().String())
	text := func(w http.ResponseWriter, body string) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/plaintext", func(w http.ResponseWriter, r *http.Request) {
		text(w, "Hello, World!")
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { text(w, "ok") })
	mux.HandleFunc("/delay/", func(w http.ResponseWriter, r *http.Request) {
		ms, ok := msIn(r.URL.Path, "/delay/")
		if !ok {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		text(w, "done")
	})
	mux.HandleFunc("/cpu/", func(w http.ResponseWriter, r *http.Request) {
		ms, ok := msIn(r.URL.Path, "/cpu/")
		if !ok {
			http.Error(w, "bad cpu", http.StatusBadRequest)
			return
		}
		sink += burn(uint64(ms) * perMs)
		text(w, "done")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Read the whole body before answering: net/http closes a connection whose handler
		// writes a response while the request body is still unread.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		os.Exit(0)
	}()
	srv := &http.Server{Handler: mux}
	srv.Serve(ln)
}
