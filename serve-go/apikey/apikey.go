// Package apikey decides whether an API key may call a path. The keys live
// in a file of one client per line, "id scopes sha256-hex" (scopes: a comma
// list of predict, read, write), written by `python -m topology keys`. Only
// the keys' SHA-256 is stored; a presented key is hashed and compared with
// every entry in constant time.
//
// The file is read again whenever its modification time or size changes,
// so adding or revoking a key (the tool replaces the file atomically) takes
// effect on the next request, with no restart and no request dropped.
package apikey

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"skl2go"
)

// Scopes a key may hold.
const (
	ScopePredict = "predict" // POST …:predict and …/infer
	ScopeRead    = "read"    // GET metadata, model lists, readiness
	ScopeWrite   = "write"   // any other POST (data sent into the system)
)

// queryKeys are query parameters a key must never travel in: URLs end up
// in logs and browser histories.
var queryKeys = []string{"key", "api_key", "apikey", "access_token", "token"}

type entry struct {
	id     string
	scopes map[string]bool
	hash   [sha256.Size]byte
}

// File is a key file, re-read when it changes.
type File struct {
	path string

	mu      sync.Mutex
	mtime   time.Time
	size    int64
	entries []entry
}

// Open reads the key file at path; a file that cannot be read or parsed is
// an error naming the line.
func Open(path string) (*File, error) {
	f := &File{path: path}
	if err := f.refresh(); err != nil {
		return nil, err
	}
	return f, nil
}

// refresh re-reads the file if it changed. A file that became unreadable
// or malformed keeps the last good keys (a half-edited file never opens
// the door nor locks every client out); the error is returned for the log.
func (f *File) refresh() error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st.ModTime().Equal(f.mtime) && st.Size() == f.size && f.entries != nil {
		return nil
	}
	entries, err := parse(f.path)
	if err != nil {
		return err
	}
	f.entries, f.mtime, f.size = entries, st.ModTime(), st.Size()
	return nil
}

func parse(path string) ([]entry, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer fh.Close()
	entries := []entry{}
	// One key per client: nginx's rate limit counts by key (it runs before
	// the key is checked), so a second key would double a client's limit.
	lines := map[string]int{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("key file %s line %d: want \"id scopes sha256\", got %d fields", path, n, len(fields))
		}
		if first, ok := lines[fields[0]]; ok {
			return nil, fmt.Errorf("key file %s line %d: client %q already has a key on line %d (one key per client)", path, n, fields[0], first)
		}
		lines[fields[0]] = n
		e := entry{id: fields[0], scopes: map[string]bool{}}
		for _, s := range strings.Split(fields[1], ",") {
			if s != ScopePredict && s != ScopeRead && s != ScopeWrite {
				return nil, fmt.Errorf("key file %s line %d: unknown scope %q (predict, read or write)", path, n, s)
			}
			e.scopes[s] = true
		}
		h, err := hex.DecodeString(fields[2])
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("key file %s line %d: the hash must be 64 hex digits", path, n)
		}
		copy(e.hash[:], h)
		entries = append(entries, e)
	}
	return entries, sc.Err()
}

// Scope is the scope a request needs: predictions need predict, other
// POSTs write, anything else read.
func Scope(method, path string) string {
	switch {
	case method == "POST" && (strings.HasSuffix(path, ":predict") || strings.HasSuffix(path, "/infer")):
		return ScopePredict
	case method == "GET" || method == "HEAD":
		return ScopeRead
	}
	return ScopeWrite
}

// Authorize returns the client id of the key in authorization (an
// "Authorization: Bearer <key>" value) when its scope covers method and
// uri (the path and query the client asked for). The errors are
// skl2go.EUNAUTHORIZED (no key, an unknown one, or a key in the query
// string) and skl2go.EFORBIDDEN (a known key whose scope does not cover the
// path); their messages never contain the key.
func (f *File) Authorize(authorization, method, uri string) (string, error) {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", skl2go.Errorf(skl2go.EUNAUTHORIZED, "malformed request path")
	}
	q := u.Query()
	for _, k := range queryKeys {
		if q.Has(k) {
			return "", skl2go.Errorf(skl2go.EUNAUTHORIZED, "API keys are not accepted in the URL (%q): send \"Authorization: Bearer <key>\"", k)
		}
	}
	scheme, key, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(key) == "" {
		return "", skl2go.Errorf(skl2go.EUNAUTHORIZED, "missing API key: send \"Authorization: Bearer <key>\"")
	}
	_ = f.refresh() // on error the last good keys stay in force
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	f.mu.Lock()
	entries := f.entries
	f.mu.Unlock()
	// Compare with every entry, whatever matched, so the time taken does
	// not tell how far a guess got or which entry it matched.
	var found *entry
	for i := range entries {
		if subtle.ConstantTimeCompare(sum[:], entries[i].hash[:]) == 1 {
			found = &entries[i]
		}
	}
	if found == nil {
		return "", skl2go.Errorf(skl2go.EUNAUTHORIZED, "unknown or revoked API key")
	}
	need := Scope(method, u.Path)
	if !found.scopes[need] {
		return found.id, skl2go.Errorf(skl2go.EFORBIDDEN, "the key of client %q has no %q scope, which %s %s needs", found.id, need, method, u.Path)
	}
	return found.id, nil
}
