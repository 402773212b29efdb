package skl2go

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
)

// ExperimentFile is the name of a model's experiment in the model
// repository: <root>/<name>/experiment.json.
const ExperimentFile = "experiment.json"

// Variant is one arm of an experiment: a version of the model, given by
// number or by a registry alias, and its share of the traffic (Weight out
// of the sum of the experiment's weights).
type Variant struct {
	Name    string `json:"name"`
	Version int    `json:"version,omitempty"`
	Alias   string `json:"alias,omitempty"`
	Weight  int    `json:"weight"`
}

// Experiment splits the requests for a model that do not pin a version
// between its variants. A request's variant is a function of the
// experiment id and the request's key only (Assign), so that every replica,
// before and after a restart, sends the same key to the same variant.
//
// Sticky names the request header whose value is the key (a user or
// session id); without it, or when a request lacks that header, the key is
// the request id. Mirror, when set, is a variant that answers no one: it
// runs on a copy of each request after the answer is written, to compare
// (a shadow).
type Experiment struct {
	ID       string    `json:"id"`
	Model    string    `json:"-"`
	Variants []Variant `json:"variants"`
	Sticky   string    `json:"sticky,omitempty"`
	Mirror   *Variant  `json:"mirror,omitempty"`

	total int // sum of the weights
}

// ExperimentStore finds the experiment running on a model, if any. The
// model store implements it when it reads experiments.
type ExperimentStore interface {
	// Experiment returns the experiment on the model, or nil.
	Experiment(model string) *Experiment
}

// Assignment is the variant a request was given, and why: it travels with
// the request to the answer, the metrics and the inference log.
type Assignment struct {
	Experiment string // experiment id
	Variant    string // variant name
	Version    int    // the version that answered
	Key        string // the sticky value or request id it was assigned by
	Mirror     *Variant
}

// ParseExperiment parses and checks the experiment.json of model: every
// problem is an error naming the field. Versions are checked against the
// repository by CheckVersions.
func ParseExperiment(data []byte, model string) (*Experiment, error) {
	var raw struct {
		ID       string          `json:"id"`
		Variants []rawVariant    `json:"variants"`
		Sticky   string          `json:"sticky"`
		Mirror   json.RawMessage `json:"mirror"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", ExperimentFile, err)
	}
	e := &Experiment{ID: raw.ID, Model: model, Sticky: raw.Sticky}
	if !ValidName(e.ID) {
		return nil, fmt.Errorf("%s: id must be 1 to 128 letters, digits, '_', '.', '-', got %q", ExperimentFile, e.ID)
	}
	if e.Sticky != "" && !validHeader(e.Sticky) {
		return nil, fmt.Errorf("%s: sticky must be a header name (letters, digits, '-'), got %q", ExperimentFile, e.Sticky)
	}
	if len(raw.Variants) == 0 {
		return nil, fmt.Errorf("%s: variants: at least one variant is needed", ExperimentFile)
	}
	names := map[string]bool{}
	for i, rv := range raw.Variants {
		where := fmt.Sprintf("variants[%d]", i)
		v, err := rv.check(where, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ExperimentFile, err)
		}
		if names[v.Name] {
			return nil, fmt.Errorf("%s: %s.name: %q is used twice", ExperimentFile, where, v.Name)
		}
		names[v.Name] = true
		e.total += v.Weight
		e.Variants = append(e.Variants, v)
	}
	if e.total <= 0 {
		return nil, fmt.Errorf("%s: variants: the weights must sum to more than 0", ExperimentFile)
	}
	if len(raw.Mirror) > 0 && !bytes.Equal(raw.Mirror, []byte("null")) {
		var rv rawVariant
		dec := json.NewDecoder(bytes.NewReader(raw.Mirror))
		dec.DisallowUnknownFields()
		dec.UseNumber()
		if err := dec.Decode(&rv); err != nil {
			return nil, fmt.Errorf("%s: mirror: %w", ExperimentFile, err)
		}
		if rv.Name == "" { // the issue's own shape, {"version": 3}, names no mirror
			rv.Name = DefaultMirrorName
		}
		v, err := rv.check("mirror", false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ExperimentFile, err)
		}
		if names[v.Name] {
			return nil, fmt.Errorf("%s: mirror.name: %q is also a variant's name", ExperimentFile, v.Name)
		}
		e.Mirror = &v
	}
	return e, nil
}

// DefaultMirrorName names a mirror whose definition gives no name.
const DefaultMirrorName = "mirror"

// rawVariant is a variant as written, its numbers still unchecked.
type rawVariant struct {
	Name    string       `json:"name"`
	Version *json.Number `json:"version"`
	Alias   string       `json:"alias"`
	Weight  *json.Number `json:"weight"`
}

func (rv rawVariant) check(where string, weighted bool) (Variant, error) {
	v := Variant{Name: rv.Name, Alias: rv.Alias}
	if !ValidName(v.Name) {
		return v, fmt.Errorf("%s.name must be 1 to 128 letters, digits, '_', '.', '-', got %q", where, v.Name)
	}
	switch {
	case rv.Version != nil && rv.Alias != "":
		return v, fmt.Errorf("%s: give version or alias, not both", where)
	case rv.Version != nil:
		n, err := positiveInt(*rv.Version)
		if err != nil {
			return v, fmt.Errorf("%s.version: %w", where, err)
		}
		v.Version = n
	case rv.Alias != "":
		if !ValidName(v.Alias) {
			return v, fmt.Errorf("%s.alias: %q is not a valid alias name", where, v.Alias)
		}
	default:
		return v, fmt.Errorf("%s: missing version (a number) or alias (a registry alias)", where)
	}
	switch {
	case !weighted && rv.Weight != nil:
		return v, fmt.Errorf("%s.weight: the mirror answers no one; it takes no weight", where)
	case !weighted:
	case rv.Weight == nil:
		return v, fmt.Errorf("%s.weight is missing (an integer, 0 or more)", where)
	default:
		n, err := strconvInt(*rv.Weight)
		if err != nil || n < 0 {
			return v, fmt.Errorf("%s.weight must be an integer, 0 or more, got %s", where, rv.Weight.String())
		}
		v.Weight = n
	}
	return v, nil
}

func positiveInt(n json.Number) (int, error) {
	v, err := strconvInt(n)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("must be a positive integer, got %s", n.String())
	}
	return v, nil
}

// strconvInt reads a small integer: weights and versions are small, and a
// huge one is a mistake, not a wish.
func strconvInt(n json.Number) (int, error) {
	i, err := n.Int64()
	if err != nil || i > 1_000_000 || i < math.MinInt32 {
		return 0, fmt.Errorf("not an integer: %s", n)
	}
	return int(i), nil
}

func validHeader(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Versions lists the versions the experiment's variants and mirror name by
// number, which must be loaded while it runs.
func (e *Experiment) Versions() []int {
	var out []int
	for _, v := range e.Variants {
		if v.Version > 0 {
			out = append(out, v.Version)
		}
	}
	if e.Mirror != nil && e.Mirror.Version > 0 {
		out = append(out, e.Mirror.Version)
	}
	return out
}

// Aliases lists the registry aliases the variants and mirror name.
func (e *Experiment) Aliases() []string {
	var out []string
	for _, v := range e.Variants {
		if v.Alias != "" {
			out = append(out, v.Alias)
		}
	}
	if e.Mirror != nil && e.Mirror.Alias != "" {
		out = append(out, e.Mirror.Alias)
	}
	return out
}

// CheckVersions refuses an experiment naming a version that is not in
// versions (the ones the repository holds).
func (e *Experiment) CheckVersions(versions []int) error {
	have := make(map[int]bool, len(versions))
	for _, v := range versions {
		have[v] = true
	}
	for i, v := range e.Variants {
		if v.Version > 0 && !have[v.Version] {
			return fmt.Errorf("%s: variants[%d].version: model %s has no version %d (it has %v)", ExperimentFile, i, e.Model, v.Version, versions)
		}
	}
	if e.Mirror != nil && e.Mirror.Version > 0 && !have[e.Mirror.Version] {
		return fmt.Errorf("%s: mirror.version: model %s has no version %d (it has %v)", ExperimentFile, e.Model, e.Mirror.Version, versions)
	}
	return nil
}

// Resolve returns a copy of the experiment whose alias variants name the
// versions resolve gives; an alias it cannot resolve is an error naming it.
func (e *Experiment) Resolve(resolve func(alias string) (int, error)) (*Experiment, error) {
	out := *e
	out.Variants = append([]Variant(nil), e.Variants...)
	fix := func(v *Variant, where string) error {
		if v.Alias == "" {
			return nil
		}
		n, err := resolve(v.Alias)
		if err != nil {
			return fmt.Errorf("%s: %s.alias %q: %w", ExperimentFile, where, v.Alias, err)
		}
		v.Version = n
		return nil
	}
	for i := range out.Variants {
		if err := fix(&out.Variants[i], fmt.Sprintf("variants[%d]", i)); err != nil {
			return nil, err
		}
	}
	if e.Mirror != nil {
		m := *e.Mirror
		if err := fix(&m, "mirror"); err != nil {
			return nil, err
		}
		out.Mirror = &m
	}
	return &out, nil
}

// Assign returns the variant for key: the FNV-1a (64-bit) hash of the
// experiment id and the key, reduced to a bucket of the weights' sum, picks
// the variant whose share holds the bucket. It depends on nothing else, so
// that the answer is the same on every replica and after a restart.
func (e *Experiment) Assign(key string) Variant {
	h := fnv.New64a()
	h.Write([]byte(e.ID))
	h.Write([]byte{0}) // "ab"+"c" and "a"+"bc" are different pairs
	h.Write([]byte(key))
	total := e.total
	if total <= 0 { // built without ParseExperiment
		for _, v := range e.Variants {
			total += v.Weight
		}
	}
	if total <= 0 {
		return e.Variants[0]
	}
	bucket := int(h.Sum64() % uint64(total))
	for _, v := range e.Variants {
		if bucket < v.Weight {
			return v
		}
		bucket -= v.Weight
	}
	return e.Variants[len(e.Variants)-1]
}

// AssignmentKey is the key a request is assigned by: the value of the
// experiment's sticky header when the request has one (bounded to 128
// bytes), else the request's id, so that the inference log's record of the
// request names the key that chose its variant.
func (e *Experiment) AssignmentKey(header func(name string) string, requestID string) string {
	if e.Sticky != "" {
		if v := header(e.Sticky); v != "" {
			return bounded(v)
		}
	}
	return requestID
}

func bounded(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}
