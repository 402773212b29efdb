package grpc

import (
	"context"
	"strconv"
	"time"

	ggrpc "google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

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

// Answer header metadata of ModelInfer, as REST's answer headers (gRPC
// metadata keys are lowercase): the request id, the model and version that
// answered, and the experiment and variant when one was assigned.
const (
	mdRequestID  = "x-request-id"
	mdModel      = "x-skl2go-model"
	mdVersion    = "x-skl2go-version"
	mdExperiment = "x-skl2go-experiment"
	mdVariant    = "x-skl2go-variant"
)

// ModelInfer runs one inference request: the model_version it names, or
// the experiment's variant, or the latest. Inputs come as typed contents or
// as raw_input_contents; the outputs go back the same way.
func (s *Server) ModelInfer(ctx context.Context, req *inferencepb.ModelInferRequest) (*inferencepb.ModelInferResponse, error) {
	start := time.Now()
	version, err := parseModel(req.GetModelName(), req.GetModelVersion(), "model_name", "model_version")
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	requestID, err := inferRequestID(req, md)
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	answer := metadata.Pairs(mdRequestID, requestID)
	// The version is held until the answer is made: a newer version may
	// replace it meanwhile, but it is not closed before release.
	model, release, assignment, err := s.acquire(req.GetModelName(), version, requestID, md)
	if err != nil {
		ggrpc.SetHeader(ctx, answer)
		return nil, s.fail("ModelInfer", err)
	}
	defer release()
	inf := &skl2go.Inference{Meta: model.Metadata(), Protocol: "grpc", Start: start, RequestID: requestID, Assignment: assignment}
	answer.Set(mdModel, inf.Meta.Name)
	answer.Set(mdVersion, strconv.Itoa(inf.Meta.Version))
	if assignment != nil {
		answer.Set(mdExperiment, assignment.Experiment)
		answer.Set(mdVariant, assignment.Variant)
	}
	ggrpc.SetHeader(ctx, answer)
	resp, err := s.infer(ctx, model, req, inf)
	if s.steps != nil {
		s.steps.FinishInference(ctx, inf, time.Now(), err)
	}
	if err != nil {
		return nil, s.fail("ModelInfer", err)
	}
	return resp, nil
}

// inferRequestID is the request's id: its id field (the protocol's; what
// tritonclient's request_id sets), else its x-request-id metadata (nginx
// sets it), checked as REST checks its header, else a new one.
func inferRequestID(req *inferencepb.ModelInferRequest, md metadata.MD) (string, error) {
	if id := req.GetId(); id != "" {
		return skl2go.RequestID(id, "id")
	}
	var id string
	if v := md.Get(mdRequestID); len(v) > 0 {
		id = v[0]
	}
	return skl2go.RequestID(id, "metadata "+mdRequestID)
}

// acquire acquires the version that answers, through the steps REST takes
// (an experiment's sticky key read from the metadata as from HTTP headers).
func (s *Server) acquire(name string, version int, requestID string, md metadata.MD) (skl2go.Model, func(), *skl2go.Assignment, error) {
	if s.steps == nil {
		model, release, err := s.store.Acquire(name, version)
		return model, release, nil, err
	}
	// Only a running experiment's sticky key is read: no copy of the
	// metadata per call (MD.Get lowercases the name, as gRPC keys are).
	header := func(name string) string {
		if v := md.Get(name); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return s.steps.AcquireInference(name, version, requestID, header)
}

func (s *Server) infer(ctx context.Context, model skl2go.Model, req *inferencepb.ModelInferRequest, inf *skl2go.Inference) (*inferencepb.ModelInferResponse, error) {
	decoded, err := DecodeRequest(req, inf.Meta, s.config.MaxRows)
	if err != nil {
		return nil, err
	}
	outputs, err := inf.Run(ctx, model, decoded.Batch)
	if err != nil {
		return nil, err
	}
	resp := EncodeResponse(req, decoded, inf.Meta, outputs)
	if a := inf.Assignment; a != nil {
		if resp.Parameters == nil {
			resp.Parameters = map[string]*inferencepb.InferParameter{}
		}
		resp.Parameters["variant"] = &inferencepb.InferParameter{ParameterChoice: &inferencepb.InferParameter_StringParam{StringParam: a.Variant}}
	}
	return resp, nil
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
