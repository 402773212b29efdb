package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"skl2go"
)

// Experiments from the registry: a registered model's tag skl2go.experiment
// holds its experiment, the text of an experiment.json (docs/experiments.md),
// whose variants may name registry aliases ("alias": "challenger") or
// registry version numbers. Each poll that reaches the registry copies the
// tag into <cache>/<name>/experiment.json (or removes it), records where
// the model's aliases point (<cache>/<name>/.aliases.json, while an
// experiment runs), downloads the versions the experiment needs into the
// cache as it does the alias's, and has the store read the experiment
// again: the store resolves each alias through Resolve, loads the versions
// beside the one served and swaps the experiment in, or refuses it with one
// log line and keeps the experiment running. A moved alias is resolved
// again at the next poll. When the registry cannot be asked nothing changes;
// a replica restarted meanwhile runs the experiment it cached.

// ExperimentTag is the registered model tag that holds the model's experiment.
const ExperimentTag = "skl2go.experiment"

const aliasesFile = ".aliases.json"

// Resolve returns the version the model's alias pointed to at the last
// poll that reached the registry (after a restart: as cached). It is the
// store's Options.ResolveAlias.
func (p *Poller) Resolve(model, alias string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.aliases[model][alias]
	if !ok {
		return 0, fmt.Errorf("registered model %s has no alias %q in the registry %s", model, alias, p.client.URL())
	}
	return v, nil
}

// experiment brings the model's experiment in line with its tag in the
// registry. It returns an error only when the registry could not be asked
// or could not deliver a version.
func (p *Poller) experiment(ctx context.Context, name string) error {
	serving := p.serving(name)
	if serving == nil {
		return nil // an experiment runs beside the version served
	}
	rm, err := p.client.RegisteredModel(ctx, name)
	if errors.Is(err, ErrNotFound) {
		rm = RegisteredModel{}
	} else if err != nil {
		return err
	}
	text := rm.Tags[ExperimentTag]
	need := map[int]bool{serving.Version: true}
	if text != "" {
		// A tag that does not parse needs nothing: the store refuses it, saying why.
		if e, err := skl2go.ParseExperiment([]byte(text), name); err == nil {
			for _, alias := range e.Aliases() {
				if v, ok := rm.Aliases[alias]; ok {
					need[v] = true
				}
			}
			for _, v := range e.Versions() {
				need[v] = true
			}
		}
	}
	for v := range p.extraRefused[name] {
		if !need[v] {
			delete(p.extraRefused[name], v)
		}
	}
	for v := range need {
		if err := p.fetchForExperiment(ctx, name, v, serving); err != nil {
			return err
		}
	}
	if text == "" {
		rm.Aliases = nil
	}
	p.writeAliases(name, rm.Aliases)
	p.writeExperiment(name, text)
	p.store.SyncExperiment(name)
	p.prune(name, need)
	return nil
}

// fetchForExperiment downloads version v of name into the cache, checked
// against the version serving as the alias's versions are. A version that
// can never serve is logged once and not tried while the experiment needs it.
func (p *Poller) fetchForExperiment(ctx context.Context, name string, v int, serving *skl2go.Metadata) error {
	if v == serving.Version || p.extraRefused[name][v] {
		return nil
	}
	err := p.fetch(ctx, ModelVersion{Name: name, Version: v}, serving)
	var r refusal
	switch {
	case err == nil:
		return nil
	case errors.As(err, &r) || errors.Is(err, ErrNotFound):
		if p.extraRefused[name] == nil {
			p.extraRefused[name] = make(map[int]bool)
		}
		p.extraRefused[name][v] = true
		os.RemoveAll(filepath.Join(p.cache, name, strconv.Itoa(v)))
		p.opts.Logger.Error("registry version refused for the experiment; the experiment running keeps running",
			"model", name, "version", v, "err", err.Error(), "serving", serving.Version)
		p.opts.Observer.ObserveRegistryRefused(name, v)
		return nil
	default:
		return fmt.Errorf("fetching %s version %d for its experiment: %w", name, v, err)
	}
}

// writeExperiment makes <cache>/<name>/experiment.json the tag's text, or
// removes it when text is empty.
func (p *Poller) writeExperiment(name, text string) {
	path := filepath.Join(p.cache, name, skl2go.ExperimentFile)
	old, err := os.ReadFile(path)
	switch {
	case text == "" && err == nil:
		err = os.Remove(path)
	case text == "" || err == nil && string(old) == text:
		return
	default:
		err = writeFileAtomic(path, []byte(text))
	}
	if err != nil {
		p.opts.Logger.Warn("could not cache the experiment", "model", name, "path", path, "err", err.Error())
	}
}

// writeAliases records where the model's aliases point, in memory and in
// the cache (none: the cached record is removed).
func (p *Poller) writeAliases(name string, aliases map[string]int) {
	p.mu.Lock()
	p.aliases[name] = aliases
	p.mu.Unlock()
	path := filepath.Join(p.cache, name, aliasesFile)
	if len(aliases) == 0 {
		os.Remove(path)
		return
	}
	data, _ := json.Marshal(aliases) // a map of strings to ints always encodes
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return
	}
	if err := writeFileAtomic(path, data); err != nil {
		p.opts.Logger.Warn("could not cache the registry's aliases", "model", name, "path", path, "err", err.Error())
	}
}

// readAliases reads the aliases cached for name, for a restart while the
// registry cannot be asked.
func (p *Poller) readAliases(name string) {
	data, err := os.ReadFile(filepath.Join(p.cache, name, aliasesFile))
	if err != nil {
		return
	}
	var aliases map[string]int
	if json.Unmarshal(data, &aliases) == nil {
		p.mu.Lock()
		p.aliases[name] = aliases
		p.mu.Unlock()
	}
}

// prune removes the cached versions of name that the store does not serve
// and keep does not hold.
func (p *Poller) prune(name string, keep map[int]bool) {
	served := map[int]bool{}
	for _, m := range p.store.Models() {
		if m.Name == name {
			for _, v := range m.Versions {
				served[v] = true
			}
		}
	}
	modelDir := filepath.Join(p.cache, name)
	entries, err := os.ReadDir(modelDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil && !served[v] && !keep[v] {
			os.RemoveAll(filepath.Join(modelDir, e.Name()))
		}
	}
}
