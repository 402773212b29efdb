package repository

import (
	"sort"
	"strings"
	"sync"

	"skl2go"
)

// Store holds the loaded models and finds them by name and version. It is
// safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	models map[string]map[int]skl2go.Model
}

var _ skl2go.ModelStore = (*Store)(nil)

// NewStore returns a store serving the given models.
func NewStore(models ...skl2go.Model) *Store {
	s := &Store{models: make(map[string]map[int]skl2go.Model)}
	for _, m := range models {
		meta := m.Metadata()
		if s.models[meta.Name] == nil {
			s.models[meta.Name] = make(map[int]skl2go.Model)
		}
		s.models[meta.Name][meta.Version] = m
	}
	return s
}

// Model implements skl2go.ModelStore.
func (s *Store) Model(name string, version int) (skl2go.Model, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	versions, ok := s.models[name]
	if !ok {
		return nil, skl2go.Errorf(skl2go.ENOTFOUND, "model %q not found (serving: %s)", name, s.namesLocked())
	}
	if version == 0 {
		version = latest(versions)
	}
	m, ok := versions[version]
	if !ok {
		return nil, skl2go.Errorf(skl2go.ENOTFOUND, "model %q has no version %d loaded (serving version %d)",
			name, version, latest(versions))
	}
	return m, nil
}

// Models implements skl2go.ModelStore.
func (s *Store) Models() []skl2go.ModelSummary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]skl2go.ModelSummary, 0, len(s.models))
	for name, versions := range s.models {
		sum := skl2go.ModelSummary{Name: name, Latest: latest(versions)}
		for v := range versions {
			sum.Versions = append(sum.Versions, v)
		}
		sort.Ints(sum.Versions)
		out = append(out, sum)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close closes every model.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, versions := range s.models {
		for _, m := range versions {
			if err := m.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	s.models = nil
	return first
}

func (s *Store) namesLocked() string {
	names := make([]string, 0, len(s.models))
	for name := range s.models {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func latest(versions map[int]skl2go.Model) int {
	best := 0
	for v := range versions {
		best = max(best, v)
	}
	return best
}
