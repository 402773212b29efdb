package http

import (
	"bytes"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"skl2go"
)

func TestBodyReadErrorsAreClientErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   io.Reader
		limit  int64
		code   string
		prefix string
	}{
		{"connection reset", io.MultiReader(strings.NewReader(`{"instances": [`), errReader{io.ErrClosedPipe}), 1 << 20, skl2go.EINVALID, "reading the request body: io: read/write on closed pipe"},
		{"deadline", io.MultiReader(strings.NewReader(`{"instan`), errReader{os.ErrDeadlineExceeded}), 1 << 20, skl2go.ETIMEOUT, "request body not received in time"},
		{"too large", strings.NewReader(`{"instances": [` + strings.Repeat(" ", 100)), 20, skl2go.ETOOLARGE, "request body too large: the limit is 20 bytes"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/v1/models/m:predict", tt.body)
		_, err := readBodyInto(new(bytes.Buffer), httptest.NewRecorder(), r, tt.limit)
		if skl2go.ErrorCode(err) != tt.code || !strings.HasPrefix(skl2go.ErrorMessage(err), tt.prefix) {
			t.Errorf("%s: err = %v; want code %s, message %q…", tt.name, err, tt.code, tt.prefix)
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
