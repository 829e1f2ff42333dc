package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/lunboot/lunboot/qemu/bootlog"
)

// console collects a guest's serial output: the raw bytes go to a log file,
// a cleaned text copy (no CR, no escape sequences) stays in memory for
// Expect, and complete lines go to an optional callback. Secrets are masked
// in all three, line by line.
type console struct {
	start  time.Time
	file   *os.File
	onLine func(string)
	mask   func(string) string

	mu         sync.Mutex
	text       []byte
	stamps     []stamp // arrival time of each chunk of text
	cursor     int     // Expect consumes text up to here
	rawPartial []byte  // raw bytes of the current line, not yet in the file
	partial    []byte  // the current line, cleaned but not yet masked
	esc        []byte  // an escape sequence cut off at the end of a write
	lineStart  int     // where the current line starts in text
	changed    chan struct{}
	ended      bool
	endErr     error
}

type stamp struct {
	end int // text offset after the chunk
	at  time.Duration
}

// maxConsoleText bounds the in-memory copy; older text that Expect has
// already consumed is dropped first (the log file keeps everything).
const maxConsoleText = 64 << 20

func newConsole(path string, onLine func(string), mask func(string) string) (*console, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	if mask == nil {
		mask = func(s string) string { return s }
	}
	return &console{start: time.Now(), file: f, onLine: onLine, mask: mask, changed: make(chan struct{})}, nil
}

// Write receives serial output (QEMU's stdout).
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	// The log file gets whole lines, masked.
	c.rawPartial = append(c.rawPartial, p...)
	for {
		i := bytes.IndexByte(c.rawPartial, '\n')
		if i < 0 {
			break
		}
		if c.file != nil {
			_, _ = c.file.WriteString(c.mask(string(c.rawPartial[:i+1])))
		}
		c.rawPartial = c.rawPartial[i+1:]
	}
	// The text: complete lines masked once, the current line re-masked
	// as it grows (a secret may arrive in pieces).
	clean, rest := cleanConsole(append(c.esc, p...))
	c.esc = append([]byte(nil), rest...)
	c.partial = append(c.partial, clean...)
	c.text = c.text[:c.lineStart]
	var lines []string
	for {
		i := bytes.IndexByte(c.partial, '\n')
		if i < 0 {
			break
		}
		line := c.mask(string(c.partial[:i]))
		c.text = append(append(c.text, line...), '\n')
		lines = append(lines, line)
		c.partial = c.partial[i+1:]
	}
	c.lineStart = len(c.text)
	c.text = append(c.text, c.mask(string(c.partial))...)
	c.cursor = min(c.cursor, len(c.text))
	c.stamps = append(c.stamps, stamp{end: len(c.text), at: time.Since(c.start)})
	if len(c.text) > maxConsoleText && c.cursor > len(c.text)/2 && c.cursor <= c.lineStart {
		c.drop(c.cursor)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	if c.onLine != nil {
		for _, l := range lines {
			c.onLine(l)
		}
	}
	return len(p), nil
}

// drop forgets text before n; called with mu held.
func (c *console) drop(n int) {
	c.text = append([]byte(nil), c.text[n:]...)
	c.cursor -= n
	c.lineStart -= n
	var st []stamp
	for _, s := range c.stamps {
		if s.end > n {
			st = append(st, stamp{end: s.end - n, at: s.at})
		}
	}
	c.stamps = st
}

// end marks the output as finished (the guest exited) with why.
func (c *console) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.ended, c.endErr = true, err
	if len(c.partial) > 0 && c.onLine != nil {
		line := c.mask(string(c.partial))
		defer c.onLine(line)
	}
	c.partial = nil
	if c.file != nil {
		if len(c.rawPartial) > 0 {
			_, _ = c.file.WriteString(c.mask(string(c.rawPartial)))
		}
		c.file.Close()
		c.file = nil
	}
	c.rawPartial = nil
	close(c.changed)
	c.changed = make(chan struct{})
}

// maxEscape bounds an escape sequence: longer ones are dropped as they come.
const maxEscape = 32

// cleanConsole drops carriage returns, ANSI/VT100 escape sequences and other
// control characters that firmware and kernels write to the serial line. An
// escape sequence cut off at the end of p is returned as rest, to be put in
// front of the next write.
func cleanConsole(p []byte) (out, rest []byte) {
	out = make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case b == 0x1b:
			// ESC [ parameters final-byte, or ESC and one character.
			if i+1 >= len(p) {
				return out, p[i:]
			}
			if p[i+1] != '[' {
				i++
				continue
			}
			j := i + 2
			for j < len(p) && (p[j] < 0x40 || p[j] > 0x7e) {
				j++
			}
			if j >= len(p) && j-i < maxEscape {
				return out, p[i:]
			}
			i = j
		case b == '\n' || b == '\t' || b >= 0x20 && b != 0x7f:
			out = append(out, b)
		}
	}
	return out, nil
}

// Match is what Expect found.
type Match struct {
	// Groups are the regexp's match and submatches.
	Groups []string
	// At is when the matching output arrived, measured from QEMU's start:
	// the figure to compare boot times with.
	At time.Duration
}

// DefaultExpectTimeout bounds an Expect whose context has no deadline.
const DefaultExpectTimeout = 5 * time.Minute

// expect waits for re in the output after the cursor and moves the cursor
// past the match, so successive calls see successive output.
func (c *console) expect(ctx context.Context, re *regexp.Regexp) (*Match, error) {
	for {
		c.mu.Lock()
		if loc := re.FindSubmatchIndex(c.text[c.cursor:]); loc != nil {
			groups := make([]string, len(loc)/2)
			for i := range groups {
				if loc[2*i] >= 0 {
					groups[i] = string(c.text[c.cursor+loc[2*i] : c.cursor+loc[2*i+1]])
				}
			}
			end := c.cursor + loc[1]
			c.cursor = end
			m := &Match{Groups: groups, At: c.arrival(end)}
			c.mu.Unlock()
			return m, nil
		}
		if c.ended {
			err := c.endErr
			c.mu.Unlock()
			return nil, &expectEnded{err}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// arrival returns when the text up to offset end had arrived.
func (c *console) arrival(end int) time.Duration {
	for _, s := range c.stamps {
		if s.end >= end {
			return s.at
		}
	}
	return time.Since(c.start)
}

type expectEnded struct{ err error }

func (e *expectEnded) Error() string { return fmt.Sprintf("guest exited (%s)", exitText(e.err)) }

// String returns all the cleaned output kept in memory.
func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text)
}

func (c *console) tail(n int) []string {
	return bootlog.LastLines(c.String(), n)
}

// Event is one match of a pattern in a guest's console output and when it
// arrived.
type Event struct {
	// Text is the matched text.
	Text string
	// At is when the text had arrived, measured from QEMU's start.
	At time.Duration
}

// events returns every match of re in all the output so far, whatever the
// Expect cursor, with its arrival time.
func (c *console) events(re *regexp.Regexp) []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Event
	for _, loc := range re.FindAllIndex(c.text, -1) {
		out = append(out, Event{Text: string(c.text[loc[0]:loc[1]]), At: c.arrival(loc[1])})
	}
	return out
}
