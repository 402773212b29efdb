package http_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"skl2go"
	skhttp "skl2go/http"
)

// keys is an Authorizer with one key, "good", of client "alice", scope predict.
type keys struct{}

func (keys) Authorize(authorization, method, uri string) (string, error) {
	switch {
	case authorization != "Bearer good":
		return "", skl2go.Errorf(skl2go.EUNAUTHORIZED, "unknown or revoked API key")
	case method != "POST":
		return "alice", skl2go.Errorf(skl2go.EFORBIDDEN, "no read scope")
	}
	return "alice", nil
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name          string
		keys          skhttp.Authorizer
		authorization string
		method        string
		status        int
		client        string
	}{
		{"keys off", nil, "Bearer good", "POST", 404, ""},
		{"good key", keys{}, "Bearer good", "POST", 204, "alice"},
		{"wrong key", keys{}, "Bearer bad", "POST", 401, ""},
		{"wrong scope", keys{}, "Bearer good", "GET", 403, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newServer(t, skhttp.Config{MaxBodyBytes: 1 << 20, MaxRows: 1000, Keys: tt.keys})
			req := httptest.NewRequest("GET", "/auth", nil)
			req.Header.Set("Authorization", tt.authorization)
			req.Header.Set("X-Original-Method", tt.method)
			req.Header.Set("X-Original-URI", "/v1/models/trip_duration:predict")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Header().Get("X-Client-Id") != tt.client {
				t.Fatalf("%d client %q, want %d %q: %s", rec.Code, rec.Header().Get("X-Client-Id"), tt.status, tt.client, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "good") || strings.Contains(rec.Body.String(), "bad") {
				t.Fatalf("the answer shows the key: %s", rec.Body)
			}
		})
	}
}
