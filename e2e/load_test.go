package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshwarden/meshwarden/cmd/meshwarden/demo"
)

// loader sends requests through the gateway at a steady rate until stopped,
// counting answers by status and remembering acknowledged request ids.
type loader struct {
	c      *demo.Client
	method string
	path   string
	hdr    func(id string) map[string]string
	body   func(id string) []byte

	sent, ok, failed atomic.Int64
	mu               sync.Mutex
	okIDs            []string
	statuses         map[int]int
	errs             []string

	cancel context.CancelFunc
	done   chan struct{}
}

func startLoader(c *demo.Client, method, path string, rps int, hdr func(string) map[string]string, body func(string) []byte) *loader {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loader{c: c, method: method, path: path, hdr: hdr, body: body, statuses: map[int]int{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		sem := make(chan struct{}, 16)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(id string) {
				defer wg.Done()
				defer func() { <-sem }()
				l.one(id)
			}(fmt.Sprintf("req-%06d", i))
		}
	}()
	return l
}

func (l *loader) one(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.sent.Add(1)
	var b []byte
	if l.body != nil {
		b = l.body(id)
	}
	r, err := l.c.Do(ctx, l.method, l.path, l.hdr(id), b)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed.Add(1)
		if len(l.errs) < 5 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	l.statuses[r.Status]++
	if r.Status == http.StatusOK {
		l.ok.Add(1)
		l.okIDs = append(l.okIDs, id)
		return
	}
	l.failed.Add(1)
	if len(l.errs) < 5 {
		l.errs = append(l.errs, fmt.Sprintf("status %d: %.200s", r.Status, r.Body))
	}
}

// stop ends the load and waits for requests in flight.
func (l *loader) stop() {
	l.cancel()
	<-l.done
}

func (l *loader) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("sent=%d ok=%d failed=%d statuses=%v errors=%v", l.sent.Load(), l.ok.Load(), l.failed.Load(), l.statuses, l.errs)
}
