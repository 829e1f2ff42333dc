package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/lunboot/lunboot/internal/netns"
)

// FileServer is an HTTP server inside the lab's namespace serving a
// folder, for boots that fetch files over HTTP (iPXE given an http://
// file name).
type FileServer struct {
	lab *Lab
	srv *http.Server
	url string
}

// ServeFiles serves dir at http://<ServerIP>:<port><prefix> from inside the
// namespace (Go's net/http; port 0 picks 80) until Close or Stop. Every
// request is written to commands.log. prefix starts and ends with '/'.
func (l *Lab) ServeFiles(dir, prefix string, port int) (*FileServer, error) {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("lab: http: prefix %q must start and end with /", prefix)
	}
	if port == 0 {
		port = 80
	}
	addr := netip.AddrPortFrom(l.server, uint16(port)).String()
	var ln net.Listener
	// A socket stays in the namespace it was made in.
	if err := netns.Do(l.ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("lab: http: listen on %s in %s: %w", addr, l.ns, err)
	}
	files := http.StripPrefix(prefix, http.FileServer(http.Dir(dir)))
	host := addr
	if port == 80 {
		host = l.server.String() // a URL names port 80 by leaving it out
	}
	fs := &FileServer{lab: l, url: "http://" + host + prefix}
	fs.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			l.cmds.printf("# http %s %s %s from %s", r.Method, r.URL.Path, r.Header.Get("User-Agent"), r.RemoteAddr)
			files.ServeHTTP(w, r)
		}),
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ln.Close()
		return nil, errClosed
	}
	l.https = append(l.https, fs)
	l.mu.Unlock()
	go func() { _ = fs.srv.Serve(ln) }()
	l.cmds.printf("# http server %s serving %s", fs.url, dir)
	return fs, nil
}

// URL returns the served folder's URL, ending in '/'.
func (f *FileServer) URL() string { return f.url }

// Stop stops the server (bounded); safe to call more than once.
func (f *FileServer) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = f.srv.Close()
		return fmt.Errorf("lab: http %s: %w", f.url, err)
	}
	return nil
}
