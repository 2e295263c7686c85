// openloop: an open-loop HTTP/1.1 load generator for the load test's latency-against-offered-load
// scenario. Requests are due at fixed times (t0 + i/rate) whatever the server does; a request
// waits for a free keep-alive connection if none is free, and its latency is measured from its
// due time, so a stalled server shows as latency instead of as fewer requests sent (no
// coordinated omission, as wrk2 and Gil Tene describe it). Every answer is checked: status 200
// and exactly the expected body. Prints one JSON line in the runner's wrk format.
//
//	openloop -addr 127.0.0.1:8080 -path /plaintext -rate 20000 -conns 64 -duration 5s -expect 'Hello, World!'
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type kind int

const (
	ok kind = iota
	badStatus
	badBody
	timedOut
	connectErr
	writeErr
	readErr
)

type result struct {
	latency time.Duration
	kind    kind
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	path := flag.String("path", "/plaintext", "request target")
	rate := flag.Float64("rate", 1000, "offered requests per second")
	conns := flag.Int("conns", 64, "keep-alive connections")
	duration := flag.Duration("duration", 5*time.Second, "how long requests are offered")
	timeout := flag.Duration("timeout", 5*time.Second, "a request unanswered this long after its due time is a timeout")
	expect := flag.String("expect", "Hello, World!", "the expected response body")
	flag.Parse()

	total := int(*rate * duration.Seconds())
	due := make(chan time.Time, total) // every request's due time, produced on schedule
	results := make([]result, 0, total)
	var mu sync.Mutex
	request := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", *path, *addr))
	want := []byte(*expect)
	record := func(t time.Time, k kind) {
		lat := time.Since(t)
		if k != ok && k != badStatus && k != badBody && lat >= *timeout {
			k = timedOut
		}
		mu.Lock()
		results = append(results, result{lat, k})
		mu.Unlock()
	}

	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var r *bufio.Reader
			for t := range due {
				if time.Since(t) > *timeout {
					record(t, timedOut)
					continue
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", *addr, *timeout); err != nil {
						c = nil
						record(t, connectErr)
						continue
					}
					r = bufio.NewReaderSize(c, 64*1024)
				}
				c.SetDeadline(t.Add(*timeout))
				if _, err := c.Write(request); err != nil {
					c.Close()
					c = nil
					record(t, writeErr)
					continue
				}
				status, body, keep, err := readResponse(r)
				switch {
				case err != nil:
					c.Close()
					c = nil
					record(t, readErr)
					continue
				case status != 200:
					record(t, badStatus)
				case !bytes.Equal(body, want):
					record(t, badBody)
				default:
					record(t, ok)
				}
				if !keep {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}

	// The schedule: request i is due at t0 + i/rate; the producer sleeps in ~1 ms steps and
	// releases every request that has come due (their due times are exact, not the wake-up's).
	t0 := time.Now()
	interval := time.Duration(float64(time.Second) / *rate)
	go func() {
		defer close(due)
		for i := 0; i < total; {
			next := t0.Add(time.Duration(i) * interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			now := time.Now()
			for ; i < total; i++ {
				at := t0.Add(time.Duration(i) * interval)
				if at.After(now) {
					break
				}
				due <- at
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(t0)

	lat := make([]float64, 0, len(results))
	count := map[kind]int{}
	for _, x := range results {
		count[x.kind]++
		if x.kind == ok || x.kind == badStatus || x.kind == badBody || x.kind == timedOut {
			lat = append(lat, float64(x.latency.Microseconds()))
		}
	}
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(q / 100 * float64(len(lat)))
		if i >= len(lat) {
			i = len(lat) - 1
		}
		return lat[i]
	}
	var sum float64
	for _, v := range lat {
		sum += v
	}
	mean := 0.0
	if len(lat) > 0 {
		mean = sum / float64(len(lat))
	}
	var qs []string
	for _, q := range []float64{50, 75, 90, 99, 99.9, 99.99} {
		qs = append(qs, fmt.Sprintf("%q: %d", strconv.FormatFloat(q, 'f', -1, 64), int64(pct(q))))
	}
	answered := count[ok] + count[badStatus] + count[badBody]
	fmt.Printf("GEARBOX_WRK_JSON {\"duration_us\": %d, \"requests\": %d, \"bytes\": 0, "+
		"\"correct\": %d, \"bad_status\": %d, \"bad_body\": %d, "+
		"\"offered_rps\": %.1f, \"sent\": %d, \"achieved_rps\": %.1f, "+
		"\"errors\": {\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": 0, \"timeout\": %d}, "+
		"\"latency_us\": {\"min\": %d, \"max\": %d, \"mean\": %.1f, \"stdev\": 0, %s}}\n",
		elapsed.Microseconds(), answered, count[ok], count[badStatus], count[badBody],
		*rate, total, float64(count[ok])/elapsed.Seconds(),
		count[connectErr], count[readErr], count[writeErr], count[timedOut],
		int64(pct(0)), int64(pct(100)), mean, strings.Join(qs, ", "))
	os.Stdout.Sync()
}

// readResponse reads one HTTP/1.1 response framed by Content-Length.
func readResponse(r *bufio.Reader) (int, []byte, bool, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, nil, false, err
	}
	parts := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
	if len(parts) < 2 {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, parts[0] == "HTTP/1.1"
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if length, err = strconv.Atoi(value); err != nil {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case "connection":
			if strings.EqualFold(value, "close") {
				keep = false
			}
		}
	}
	if length < 0 {
		return 0, nil, false, fmt.Errorf("no Content-Length")
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, false, err
	}
	return status, body, keep, nil
}
