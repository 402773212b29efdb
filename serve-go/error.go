package skl2go

import (
	"errors"
	"fmt"
	"strconv"
)

// Error codes. The HTTP package maps each to a status.
const (
	EINVALID     = "invalid"                // bad request data
	ENOTFOUND    = "not_found"              // no such model or version
	ETOOLARGE    = "too_large"              // body or batch over the limit
	ETIMEOUT     = "timeout"                // the client was too slow sending its request
	EUNSUPPORTED = "unsupported_media_type" // not JSON
	EUNAVAILABLE = "unavailable"            // shutting down, not ready
	EOVERLOADED  = "overloaded"             // too much work already: retry later
	EINTERNAL    = "internal"               // anything else: a bug or a runtime failure

	EUNAUTHORIZED = "unauthorized" // no API key, or an unknown one
	EFORBIDDEN    = "forbidden"    // the key's scope does not cover the request
)

// Error is an error meant for the client: Message is shown to them as is.
// Any other error is internal: logged, and shown as "internal error".
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("skl2go error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err's *Error, EINTERNAL for any other
// error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message a client may see for err.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	}
	return "internal error"
}

// Quote shows a client's string in an error message, shortened.
func Quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}
