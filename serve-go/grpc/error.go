package grpc

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"skl2go"
)

// statusCodes maps skl2go error codes to gRPC status codes: the gRPC
// counterparts of the HTTP statuses package http answers for the same
// errors (400, 404, 413, 408, 415, 503, 500, 401, 403).
var statusCodes = map[string]codes.Code{
	skl2go.EINVALID:      codes.InvalidArgument,
	skl2go.ENOTFOUND:     codes.NotFound,
	skl2go.ETOOLARGE:     codes.ResourceExhausted,
	skl2go.ETIMEOUT:      codes.DeadlineExceeded,
	skl2go.EUNSUPPORTED:  codes.InvalidArgument,
	skl2go.EUNAVAILABLE:  codes.Unavailable,
	skl2go.EOVERLOADED:   codes.Unavailable,
	skl2go.EINTERNAL:     codes.Internal,
	skl2go.EUNAUTHORIZED: codes.Unauthenticated,
	skl2go.EFORBIDDEN:    codes.PermissionDenied,
}

// StatusCode is the gRPC status code of err's skl2go error code (Internal
// for any other error, OK for nil).
func StatusCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if c, ok := statusCodes[skl2go.ErrorCode(err)]; ok {
		return c
	}
	return codes.Internal
}

// toStatus turns err into the gRPC status error a client sees: its code
// and its client message ("internal error" for internal errors, logged by
// the caller).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(StatusCode(err), skl2go.ErrorMessage(err))
}
