package grpc

import (
	"context"
	"strconv"
	"time"

	"skl2go"
	"skl2go/grpc/inferencepb"
	"skl2go/oip"
)

// ServerLive answers live while the process runs.
func (s *Server) ServerLive(context.Context, *inferencepb.ServerLiveRequest) (*inferencepb.ServerLiveResponse, error) {
	return &inferencepb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers whether the server serves models. The protocol
// carries "not ready" in the answer (REST uses a status code for it).
func (s *Server) ServerReady(context.Context, *inferencepb.ServerReadyRequest) (*inferencepb.ServerReadyResponse, error) {
	return &inferencepb.ServerReadyResponse{Ready: s.ready.Load()}, nil
}

// ModelReady answers ready for a loaded model (version) while the server is
// ready, and not ready for one that is not loaded; a malformed name or
// version is INVALID_ARGUMENT.
func (s *Server) ModelReady(ctx context.Context, req *inferencepb.ModelReadyRequest) (*inferencepb.ModelReadyResponse, error) {
	version, err := parseModel(req.GetName(), req.GetVersion(), "name", "version")
	if err != nil {
		return nil, s.fail("ModelReady", err)
	}
	_, release, err := s.store.Acquire(req.GetName(), version)
	if err != nil {
		if skl2go.ErrorCode(err) == skl2go.ENOTFOUND {
			return &inferencepb.ModelReadyResponse{Ready: false}, nil
		}
		return nil, s.fail("ModelReady", err)
	}
	release()
	return &inferencepb.ModelReadyResponse{Ready: s.ready.Load()}, nil
}

// ServerMetadata answers the server's name, version and extensions.
func (s *Server) ServerMetadata(context.Context, *inferencepb.ServerMetadataRequest) (*inferencepb.ServerMetadataResponse, error) {
	return &inferencepb.ServerMetadataResponse{Name: "skl2go", Version: s.config.Version, Extensions: oip.Extensions}, nil
}

// ModelMetadata answers the metadata REST's GET /v2/models/<name> does.
func (s *Server) ModelMetadata(ctx context.Context, req *inferencepb.ModelMetadataRequest) (*inferencepb.ModelMetadataResponse, error) {
	version, err := parseModel(req.GetName(), req.GetVersion(), "name", "version")
	if err != nil {
		return nil, s.fail("ModelMetadata", err)
	}
	model, release, err := s.store.Acquire(req.GetName(), version)
	if err != nil {
		return nil, s.fail("ModelMetadata", err)
	}
	defer release()
	meta := model.Metadata()
	var versions []int
	for _, m := range s.store.Models() {
		if m.Name == meta.Name {
			versions = m.Versions
		}
	}
	doc := oip.NewModelMetadata(meta, versions)
	resp := &inferencepb.ModelMetadataResponse{Name: doc.Name, Versions: doc.Versions, Platform: doc.Platform}
	for _, t := range doc.Inputs {
		resp.Inputs = append(resp.Inputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range doc.Outputs {
		resp.Outputs = append(resp.Outputs, &inferencepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return resp, nil
}

// ModelInfer runs one inference request: the model_version it names, or
// the latest. Inputs come as typed contents or as raw_input_contents; the
// outputs go back the same way.
func (s *Server) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	version, err := parseModel(req.GetModelName(), req.GetModelVersion(), "model_name", "model_version")
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	// The version is held until the answer is made: a newer version may
	// replace it meanwhile, but it is not closed before release.
	model, release, err := s.store.Acquire(req.GetModelName(), version)
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	defer release()
	inf := &skl2go.Inference{Meta: model.Metadata(), Protocol: "grpc", Start: time.Now()}
	resp, err := s.infer(ctx, model, req, inf)
	if s.observer != nil {
		s.observer.ObserveInference(inf, time.Now(), err)
	}
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	return resp, nil
}

func (s *Server) infer(ctx context.Context, model skl2go.Model, req *inferencepb.ModelInferRequest, inf *skl2go.Inference) (*inferencepb.ModelInferResponse, error) {
	meta := inf.Meta
	decoded, err := DecodeRequest(req, meta, s.config.MaxRows)
	if err != nil {
		return nil, err
	}
	inf.Decoded, inf.Rows = time.Now(), decoded.Batch.Rows
	outputs, err := model.Predict(ctx, decoded.Batch)
	inf.Computed = time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return nil, skl2go.Errorf(skl2go.EUNAVAILABLE, "request cancelled")
		}
		return nil, err
	}
	return EncodeResponse(req, decoded, meta, outputs), nil
}

// parseModel checks a request's model name and reads its version: 0 (the
// latest) when empty. The field names are the request's, for messages.
func parseModel(name, version, nameField, versionField string) (int, error) {
	if name == "" {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s: missing: name the model", nameField)
	}
	if !skl2go.ValidName(name) {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s: %s is not a valid model name", nameField, skl2go.Quote(name))
	}
	if version == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(version)
	if err != nil || v < 1 {
		return 0, skl2go.Errorf(skl2go.EINVALID, "%s: expected a positive integer, got %s", versionField, skl2go.Quote(version))
	}
	return v, nil
}
