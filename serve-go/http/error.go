package http

import (
	"fmt"
	"net/http"

	"skl2go"
)

// codes maps skl2go error codes to HTTP statuses.
var codes = map[string]int{
	skl2go.EINVALID:      http.StatusBadRequest,
	skl2go.ENOTFOUND:     http.StatusNotFound,
	skl2go.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	skl2go.ETIMEOUT:      http.StatusRequestTimeout,
	skl2go.EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	skl2go.EUNAVAILABLE:  http.StatusServiceUnavailable,
	skl2go.EOVERLOADED:   http.StatusServiceUnavailable,
	skl2go.EINTERNAL:     http.StatusInternalServerError,
	skl2go.EUNAUTHORIZED: http.StatusUnauthorized,
	skl2go.EFORBIDDEN:    http.StatusForbidden,
	eMETHOD:              http.StatusMethodNotAllowed,
	eTOOMANY:             http.StatusTooManyRequests,
}

// eMETHOD is an HTTP-only code: the path exists, the method does not.
const eMETHOD = "method_not_allowed"

func errMethod(got, want string) error {
	return &skl2go.Error{Code: eMETHOD, Message: fmt.Sprintf("method %s not allowed: use %s", got, want)}
}

// writeError answers with err's status and a JSON body {"error": message};
// internal errors are logged with their detail and shown as "internal error".
// A 503 (overloaded, or shutting down) tells the client when to retry.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := skl2go.ErrorCode(err)
	if code == skl2go.EINTERNAL {
		s.logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "request_id", requestID(r), "err", err)
	}
	status, ok := codes[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error": skl2go.ErrorMessage(err)})
}
