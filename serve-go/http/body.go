package http

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"skl2go"
)

// maxPooledBody is the largest body buffer kept for reuse: a rare huge
// request should not pin its memory.
const maxPooledBody = 4 << 20

func (s *Server) releaseBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		s.bodies.Put(buf)
	}
}

// readBodyInto reads the whole body into buf (reset first), decompressing
// gzip or deflate bodies; the size limit applies before and after
// decompression. The bytes returned are buf's: callers reuse buffers, so
// nothing decoded from them may keep referring to them. Every error is a
// client error: a body that does not read to its end (over the size limit,
// too slow, cut off) is the client's problem.
func readBodyInto(buf *bytes.Buffer, w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	limited := http.MaxBytesReader(w, r.Body, limit)
	var body io.Reader = limited
	encoding := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	var err error
	switch encoding {
	case "", "identity":
	case "gzip":
		body, err = gzip.NewReader(limited)
	case "deflate":
		body, err = zlib.NewReader(limited)
	default:
		return nil, skl2go.Errorf(skl2go.EUNSUPPORTED, "Content-Encoding %s is not supported: use gzip, deflate or none", skl2go.Quote(encoding))
	}
	var data []byte
	if err == nil {
		buf.Reset()
		buf.Grow(int(min(max(r.ContentLength, 512), limit) + 1))
		_, err = buf.ReadFrom(io.LimitReader(body, limit+1))
		data = buf.Bytes()
	}
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	transport := errors.As(err, &tooLarge) || (errors.As(err, &netErr) && netErr.Timeout())
	switch {
	case err != nil && !transport && encoding != "" && encoding != "identity":
		return nil, skl2go.Errorf(skl2go.EINVALID, "body is not valid %s data: %v", encoding, err)
	case err != nil:
		return nil, bodyReadError(err, buf.Len())
	case int64(len(data)) > limit:
		return nil, skl2go.Errorf(skl2go.ETOOLARGE, "request body too large: the limit is %d bytes once decompressed", limit)
	}
	return data, nil
}

// bodyReadError turns an error reading a request body, after read bytes,
// into a client error.
func bodyReadError(err error, read int) error {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return skl2go.Errorf(skl2go.ETOOLARGE, "request body too large: the limit is %d bytes", tooLarge.Limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return skl2go.Errorf(skl2go.ETIMEOUT, "request body not received in time (after %d bytes)", read)
	}
	return skl2go.Errorf(skl2go.EINVALID, "reading the request body: %v", err)
}
