package tfserving

import "skl2go"

// ModelMetadata is what GET /v1/models/<name>[/versions/<v>] shows a
// client: how to call the model and what it answers. The rest of
// model.json (file paths and hashes, the training data's files and
// fingerprint, library versions, metrics, held-out example rows) stays on
// disk: a client has no use for it, and paths and data describe the
// machine and the training set, not the API.
type ModelMetadata struct {
	Name    string              `json:"name"`
	Version int                 `json:"version"`
	Task    string              `json:"task"`
	Classes []int64             `json:"classes,omitempty"`
	Inputs  []skl2go.TensorSpec `json:"inputs"`
	Outputs []skl2go.TensorSpec `json:"outputs"`
}

// NewModelMetadata returns the client's view of meta.
func NewModelMetadata(meta *skl2go.Metadata) ModelMetadata {
	return ModelMetadata{Name: meta.Name, Version: meta.Version, Task: meta.Task, Classes: meta.Classes,
		Inputs: meta.Inputs, Outputs: meta.Outputs}
}
