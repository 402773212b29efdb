// Package grpc serves skl2go models over gRPC with the Open Inference
// Protocol's service, inference.GRPCInferenceService (KServe V2, as Triton
// speaks it), beside the standard health service (grpc.health.v1).
//
// It owns the gRPC transport only. The tensor rules (names, datatypes,
// shapes, element checks, the binary encoding of raw contents) are package
// oip's, shared with the REST V2 API; the models, their versions, dynamic
// batching and limits come from the same store; each inference takes the
// steps REST's take (skl2go.InferenceSteps, package http's): the
// experiment's variant, the metrics, labelled protocol="grpc", the
// inference log and the experiment's mirror.
package grpc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"

	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"skl2go"
	"skl2go/grpc/inferencepb"
)

// ServiceName is the inference service's full name, also the name the
// health service reports it under.
const ServiceName = "inference.GRPCInferenceService"

// Config holds the server's limits and options.
type Config struct {
	// MaxMessageBytes is the largest request message (the REST body limit,
	// --max-body-bytes); a larger one gets RESOURCE_EXHAUSTED.
	MaxMessageBytes int
	// MaxRows is the most rows a request may carry (--max-rows).
	MaxRows int
	// Reflection registers the server reflection service, for grpcurl and
	// similar tools; off by default.
	Reflection bool
	// Version is what ServerMetadata reports.
	Version string
}

// Server is the gRPC front of a model store.
type Server struct {
	inferencepb.UnimplementedGRPCInferenceServiceServer

	store  skl2go.ModelStore
	config Config
	logger *slog.Logger
	steps  skl2go.InferenceSteps // nil: the store answers, nothing is recorded
	health *health.Server
	ready  atomic.Bool
	server *ggrpc.Server
}

// NewServer returns a server for store whose inference requests take steps
// (package http's server: experiments, metrics, inference log, mirror; nil:
// the store's versions answer and nothing is recorded). It is not ready
// until SetReady(true).
func NewServer(store skl2go.ModelStore, config Config, logger *slog.Logger, steps skl2go.InferenceSteps) *Server {
	s := &Server{store: store, config: config, logger: logger, steps: steps, health: health.NewServer()}
	opts := []ggrpc.ServerOption{ggrpc.ChainUnaryInterceptor(s.recoverPanic)}
	if config.MaxMessageBytes > 0 {
		opts = append(opts, ggrpc.MaxRecvMsgSize(config.MaxMessageBytes))
	}
	s.server = ggrpc.NewServer(opts...)
	inferencepb.RegisterGRPCInferenceServiceServer(s.server, s)
	healthpb.RegisterHealthServer(s.server, s.health)
	if config.Reflection {
		reflection.Register(s.server)
	}
	s.SetReady(false)
	return s
}

// SetReady sets what ServerReady and the health service answer.
func (s *Server) SetReady(ready bool) {
	s.ready.Store(ready)
	serving := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		serving = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", serving)
	s.health.SetServingStatus(ServiceName, serving)
}

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.server.Serve(ln) }

// Shutdown stops being ready (the health service says NOT_SERVING), stops
// taking calls, and waits for those in flight until ctx is done, then ends
// them.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.server.GracefulStop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.server.Stop()
		<-done
		return ctx.Err()
	}
}

// recoverPanic answers INTERNAL, and logs, when a handler panics: one bad
// request must not end the process.
func (s *Server) recoverPanic(ctx context.Context, req any, info *ggrpc.UnaryServerInfo, handler ggrpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// fail logs internal errors with their detail and returns err's status.
func (s *Server) fail(method string, err error) error {
	if skl2go.ErrorCode(err) == skl2go.EINTERNAL {
		s.logger.Error("internal error", "method", method, "err", err)
	}
	return toStatus(err)
}
