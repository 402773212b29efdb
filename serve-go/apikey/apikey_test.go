package apikey

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skl2go"
)

func hash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func write(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestAuthorize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	write(t, path, "# clients\nalice predict "+hash("alice-secret")+"\nbob read,write "+hash("bob-secret")+"\n")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, auth, method, uri string
		client, code            string
	}{
		{"predict ok", "Bearer alice-secret", "POST", "/v1/models/m:predict", "alice", ""},
		{"infer ok", "bearer alice-secret", "POST", "/v2/models/m/versions/2/infer", "alice", ""},
		{"predict key reads", "Bearer alice-secret", "GET", "/v1/models/m", "alice", skl2go.EFORBIDDEN},
		{"read ok", "Bearer bob-secret", "GET", "/v2/models/m", "bob", ""},
		{"read key predicts", "Bearer bob-secret", "POST", "/v1/models/m:predict", "bob", skl2go.EFORBIDDEN},
		{"write ok", "Bearer bob-secret", "POST", "/v1/models/m/feedback", "bob", ""},
		{"no header", "", "GET", "/v1/models", "", skl2go.EUNAUTHORIZED},
		{"not bearer", "Basic YWxpY2U6eA==", "GET", "/v1/models", "", skl2go.EUNAUTHORIZED},
		{"wrong key", "Bearer alice-secreT", "POST", "/v1/models/m:predict", "", skl2go.EUNAUTHORIZED},
		{"key in query", "Bearer alice-secret", "POST", "/v1/models/m:predict?api_key=alice-secret", "", skl2go.EUNAUTHORIZED},
		{"token in query", "", "GET", "/v1/models?access_token=x", "", skl2go.EUNAUTHORIZED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := f.Authorize(tt.auth, tt.method, tt.uri)
			if got := skl2go.ErrorCode(err); got != tt.code {
				t.Fatalf("code %q, want %q (%v)", got, tt.code, err)
			}
			if client != tt.client {
				t.Fatalf("client %q, want %q", client, tt.client)
			}
			if err != nil && strings.Contains(skl2go.ErrorMessage(err), "secret") {
				t.Fatalf("the message shows the key: %v", err)
			}
		})
	}
}

func TestReloadAndRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	write(t, path, "alice predict "+hash("a")+"\n")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Authorize("Bearer b", "POST", "/v1/models/m:predict"); skl2go.ErrorCode(err) != skl2go.EUNAUTHORIZED {
		t.Fatalf("b before it was added: %v", err)
	}
	later := time.Now().Add(2 * time.Second)
	write(t, path, "bob predict "+hash("b")+"\n")
	os.Chtimes(path, later, later) // a coarse file system clock may not tell the two writes apart
	if _, err := f.Authorize("Bearer b", "POST", "/v1/models/m:predict"); err != nil {
		t.Fatalf("b once added: %v", err)
	}
	if _, err := f.Authorize("Bearer a", "POST", "/v1/models/m:predict"); skl2go.ErrorCode(err) != skl2go.EUNAUTHORIZED {
		t.Fatalf("a once revoked: %v", err)
	}
	// A malformed file keeps the last good keys.
	write(t, path, "bob predict nothex\n")
	os.Chtimes(path, later.Add(time.Second), later.Add(time.Second))
	if _, err := f.Authorize("Bearer b", "POST", "/v1/models/m:predict"); err != nil {
		t.Fatalf("b after a malformed edit: %v", err)
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"fields": "alice predict\n",
		"scope":  "alice admin " + hash("a") + "\n",
		"hash":   "alice predict abcd\n",
		"twice":  "alice predict " + hash("a") + "\nalice read " + hash("b") + "\n",
	} {
		path := filepath.Join(dir, name)
		write(t, path, text)
		if _, err := Open(path); err == nil {
			t.Errorf("%s: accepted %q", name, text)
		}
	}
}
