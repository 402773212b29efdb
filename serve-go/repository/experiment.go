package repository

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"skl2go"
)

// Experiments: <root>/<name>/experiment.json splits the requests that do
// not pin a version between versions of the model (skl2go.Experiment). The
// store reads it at start-up and on every Sync, like the versions: a new or
// changed file starts or changes the experiment once the versions it names
// are loaded; a deleted file ends it; a file that does not parse, names a
// version the repository lacks, or one that does not load is refused with
// one log line per change, and the experiment running keeps running.

var _ skl2go.ExperimentStore = (*Store)(nil)

// Experiment implements skl2go.ExperimentStore.
func (s *Store) Experiment(model string) *skl2go.Experiment {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.experiments[model]
}

// experimentState is what the store last accepted or refused for a model's
// experiment.json, so that each change is logged once.
type experimentState struct {
	accepted string // the file running, and the versions it resolved to
	refused  string // the last refusal logged
}

// readExperiment reads and checks a model's experiment.json; nil, nil when
// there is none.
func (s *Store) readExperiment(m ModelDir) (*skl2go.Experiment, []byte, error) {
	path := filepath.Join(s.root, m.Name, skl2go.ExperimentFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	e, err := skl2go.ParseExperiment(data, m.Name)
	if err != nil {
		return nil, data, err
	}
	if len(e.Aliases()) > 0 {
		if s.resolveAlias == nil {
			return nil, data, aliasNeedsRegistry(e)
		}
		if e, err = e.Resolve(func(alias string) (int, error) { return s.resolveAlias(m.Name, alias) }); err != nil {
			return nil, data, err
		}
	}
	if err := e.CheckVersions(m.Versions); err != nil {
		return nil, data, err
	}
	return e, data, nil
}

// aliasNeedsRegistry is the refusal of an experiment naming an alias on a
// server that follows no registry: it names the first such variant.
func aliasNeedsRegistry(e *skl2go.Experiment) error {
	for _, v := range e.Variants {
		if v.Alias != "" {
			return fmt.Errorf("%s: variant %s: alias %q needs --registry (aliases resolve through the MLflow registry); name a version instead",
				skl2go.ExperimentFile, v.Name, v.Alias)
		}
	}
	return fmt.Errorf("%s: mirror %s: alias %q needs --registry (aliases resolve through the MLflow registry); name a version instead",
		skl2go.ExperimentFile, e.Mirror.Name, e.Mirror.Alias)
}

// syncExperiment decides the experiment on model m and adds the versions
// it needs to kept (from serving, or loaded now). It holds syncMu.
func (s *Store) syncExperiment(m ModelDir, serving, kept map[int]*handle) *skl2go.Experiment {
	old := s.Experiment(m.Name)
	state := s.experimentStates[m.Name]
	e, data, err := s.readExperiment(m)
	if err == nil && e != nil {
		err = s.keepVersions(m.Name, e, serving, kept)
	}
	path := filepath.Join(s.root, m.Name, skl2go.ExperimentFile)
	switch {
	case err != nil:
		if msg := err.Error(); state.refused != msg {
			state.refused = msg
			running := "none"
			if old != nil {
				running = old.ID
			}
			s.logger.Error("experiment refused; the experiment running keeps running", "model", m.Name, "path", path,
				"err", msg, "running", running)
		}
		s.experimentStates[m.Name] = state
		if old != nil && s.keepVersions(m.Name, old, serving, kept) != nil {
			return nil // its versions are gone: nothing to keep running
		}
		return old
	case e == nil:
		if old != nil {
			s.logger.Info("experiment ended", "model", m.Name, "experiment", old.ID, "path", path)
		}
		delete(s.experimentStates, m.Name)
		return nil
	}
	// The versions too: the file is the same when only an alias moved.
	accepted := string(data) + "\x00" + describeVariants(e)
	if state.accepted != accepted {
		s.logger.Info("experiment running", "model", m.Name, "experiment", e.ID, "path", path,
			"variants", describeVariants(e), "sticky", e.Sticky, "mirror", e.Mirror != nil)
	}
	s.experimentStates[m.Name] = experimentState{accepted: accepted}
	return e
}

// keepVersions puts every version e names into kept, loading the ones not
// serving; if one fails, the ones it loaded are released and kept is as
// it was.
func (s *Store) keepVersions(name string, e *skl2go.Experiment, serving, kept map[int]*handle) error {
	var loaded []int
	for _, v := range e.Versions() {
		if _, ok := kept[v]; ok {
			continue
		}
		if h, ok := serving[v]; ok {
			kept[v] = h
			continue
		}
		dir := filepath.Join(s.root, name, strconv.Itoa(v))
		stamp := stampDir(dir)
		err := error(nil)
		if r, ok := s.refused[dir]; ok && r.stamp == stamp {
			err = r.err
		} else {
			var h *handle
			if h, err = s.loadVersion(name, v); err == nil {
				kept[v] = h
				loaded = append(loaded, v)
				continue
			}
			s.refused[dir] = refusal{stamp: stamp, err: err}
			s.countFailure(name)
		}
		for _, l := range loaded {
			kept[l].release()
			delete(kept, l)
		}
		return fmt.Errorf("version %d does not load: %w", v, err)
	}
	return nil
}

func describeVariants(e *skl2go.Experiment) string {
	var b bytes.Buffer
	for i, v := range e.Variants {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=v%d:%d", v.Name, v.Version, v.Weight)
	}
	if m := e.Mirror; m != nil {
		fmt.Fprintf(&b, "; mirror %s=v%d", m.Name, m.Version)
	}
	return b.String()
}
