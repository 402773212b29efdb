package onnx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"skl2go"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
	"skl2go/tfserving"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

func load(t *testing.T, root string, version int) (*onnx.Model, error) {
	t.Helper()
	entry, err := repository.Read(root, fixture.Model, version)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.Load(entry.Dir, entry.Metadata)
}

// examplesBatch decodes model.json's examples, returning them with sklearn's predictions.
func examplesBatch(t *testing.T, meta *skl2go.Metadata) (*skl2go.Batch, []float64) {
	t.Helper()
	instances, want := fixture.Examples(meta)
	data, _ := json.Marshal(instances)
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	batch, err := tfserving.DecodeInstances(dec, meta, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return batch, want
}

// loadNamed loads version 1 of the fixture model `name` and closes it when the test ends.
func loadNamed(t *testing.T, name string) *onnx.Model {
	t.Helper()
	entry, err := repository.Read(models, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := runtime.Load(entry.Dir, entry.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// loadFixture loads the fixture model and closes it when the test ends.
func loadFixture(t *testing.T) *onnx.Model {
	t.Helper()
	m, err := load(t, models, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestPredictMatchesSklearn(t *testing.T) {
	m := loadFixture(t)
	batch, want := examplesBatch(t, m.Metadata())
	if len(want) < 4 {
		t.Fatalf("fixture has %d examples, want several", len(want))
	}
	out, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Name != "variable" || out[0].Shape[0] != int64(len(want)) {
		t.Fatalf("outputs = %+v", out)
	}
	for i, got := range out[0].Float64s() {
		if !skl2go.WithinTolerance(got, want[i]) {
			t.Errorf("row %d: got %g, sklearn %g", i, got, want[i])
		}
	}
}

func TestClassifierPredictsLabelsAndProbabilitiesLikeSklearn(t *testing.T) {
	m := loadNamed(t, fixture.Classifier)
	instances, want := fixture.ClassExamples(m.Metadata())
	data, _ := json.Marshal(instances)
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	batch, err := tfserving.DecodeInstances(dec, m.Metadata(), 100)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(want))
	if len(out) != 2 || out[0].Name != "label" || out[0].Type != skl2go.Int64 || fmt.Sprint(out[0].Shape) != fmt.Sprint([]int64{n}) ||
		out[1].Name != "probabilities" || out[1].Type != skl2go.Float32 || fmt.Sprint(out[1].Shape) != fmt.Sprint([]int64{n, 2}) {
		t.Fatalf("outputs = %+v", out)
	}
	for i, w := range want {
		if got := out[0].Int64[i]; got != w.Label {
			t.Errorf("row %d: label %d, sklearn %d", i, got, w.Label)
		}
		for c, p := range out[1].Float32[2*i : 2*i+2] {
			if math.Abs(float64(p)-w.Probabilities[c]) > skl2go.ProbabilityTolerance {
				t.Errorf("row %d: probability of class %d is %g, sklearn %g", i, c, p, w.Probabilities[c])
			}
		}
	}
	if len(want) < 4 {
		t.Errorf("fixture classifier has %d examples, want several", len(want))
	}
}

func TestConcurrentPredictionsAgree(t *testing.T) {
	m := loadFixture(t)
	batch, want := examplesBatch(t, m.Metadata())
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				out, err := m.Predict(context.Background(), batch)
				if err != nil {
					errs <- err
					return
				}
				for r, got := range out[0].Float64s() {
					if !skl2go.WithinTolerance(got, want[r]) {
						errs <- &skl2go.Error{Code: "mismatch", Message: "concurrent prediction differs"}
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestPredictHonoursCancelledContext(t *testing.T) {
	m := loadFixture(t)
	batch, _ := examplesBatch(t, m.Metadata())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Predict(ctx, batch); err == nil {
		t.Fatal("predicted with a cancelled context")
	}
}

func TestLoadRefusesModelsThatDisagreeWithTheirGraph(t *testing.T) {
	// classExample edits the classifier's examples[i].prediction.
	classExample := func(i int, edit func(p map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				edit(m["examples"].([]any)[i].(map[string]any)["prediction"].(map[string]any))
			})
		}
	}
	tests := []struct {
		name   string
		model  string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"classifier: sklearn gave the other label", fixture.Classifier, classExample(2, func(p map[string]any) {
			p["label"] = 1 - p["label"].(float64)
		}), "the graph does not reproduce sklearn's predictions recorded in model.json: examples[2]: label: graph"},
		{"classifier: a probability 2e-5 off", fixture.Classifier, classExample(5, func(p map[string]any) {
			p["probabilities"].([]any)[1] = p["probabilities"].([]any)[1].(float64) + 2e-5
		}), "examples[5]: probabilities[1]: graph"},
		{"classifier: probabilities recorded as a number", fixture.Classifier, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["examples"].([]any)[0].(map[string]any)["prediction"] = 0.5
			})
		}, `examples[0]: the recorded prediction 0.5 is not {"label": …, "probabilities": [2 numbers]}`},
		{"classifier: three classes declared", fixture.Classifier, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["classes"] = []int{0, 1, 2}
				m["outputs"].([]any)[1].(map[string]any)["shape"] = []int{-1, 3}
			})
		}, `output "probabilities": model.json says shape [-1 3], the graph has [-1 2]`},
		{"wrong input type", fixture.Model, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["inputs"].([]any)[2].(map[string]any)["type"] = "tensor(double)"
			})
		}, `input "trip_distance": model.json says tensor(double), the graph has tensor(float)`},
		{"wrong input name", fixture.Model, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["inputs"].([]any)[0].(map[string]any)["name"] = "pickup_zone"
			})
		}, `input "pickup_zone" is not in the graph`},
		{"input left out", fixture.Model, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["inputs"] = m["inputs"].([]any)[1:]
			})
		}, `graph input "PULocationID" is not described in model.json`},
		{"wrong output rank", fixture.Model, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				m["outputs"].([]any)[0].(map[string]any)["shape"] = []int{-1}
			})
		}, `output "variable": model.json says shape [-1], the graph has [-1 1]`},
		{"sklearn predicted otherwise", fixture.Model, func(t *testing.T, dir string) {
			fixture.EditMetadata(t, dir, func(m map[string]any) {
				ex := m["examples"].([]any)[3].(map[string]any)
				ex["prediction"] = ex["prediction"].(float64) + 0.5
			})
		}, "the graph does not reproduce sklearn's predictions recorded in model.json: examples[3]"},
		{"corrupt graph", fixture.Model, func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "model.onnx"))
			os.WriteFile(filepath.Join(dir, "model.onnx"), data[:len(data)/2], 0o644)
		}, "ONNX Runtime cannot read the graph"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := fixture.CopyModel(t, models, root, tt.model, 1)
			tt.damage(t, dir)
			entry := repository.Entry{Dir: dir}
			data, _ := os.ReadFile(filepath.Join(dir, "model.json"))
			meta, err := skl2go.ParseMetadata(data)
			if err != nil {
				t.Fatal(err)
			}
			entry.Metadata = meta
			m, err := runtime.Load(entry.Dir, entry.Metadata)
			if err == nil {
				m.Close()
				t.Fatal("loaded; want a refusal")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFindLibrary(t *testing.T) {
	if _, err := onnx.FindLibrary("/no/such/libonnxruntime.so"); err == nil || !strings.Contains(err.Error(), "/no/such/libonnxruntime.so") {
		t.Errorf("explicit missing path: err = %v", err)
	}
	root := t.TempDir()
	capi := filepath.Join(root, ".venv", "lib", "python3.11", "site-packages", "onnxruntime", "capi")
	os.MkdirAll(capi, 0o755)
	for _, name := range []string{"libonnxruntime.so.1.32.0", "libonnxruntime_providers_shared.so"} {
		os.WriteFile(filepath.Join(capi, name), nil, 0o644)
	}
	deep := filepath.Join(root, "serve-go", "http")
	os.MkdirAll(deep, 0o755)
	t.Chdir(deep)
	got, err := onnx.FindLibrary("")
	if err != nil || got != filepath.Join(capi, "libonnxruntime.so.1.32.0") {
		t.Errorf("FindLibrary from %s = %q, %v", deep, got, err)
	}
}

// A row's answer is the same, to the bit, alone or within a batch of any
// size: ONNX Runtime's one-row matrix multiply adds in another order, so
// Predict never runs a single row (see Predict).
func TestRowAnswersDoNotDependOnTheBatch(t *testing.T) {
	for _, name := range []string{fixture.Model, fixture.Classifier} {
		t.Run(name, func(t *testing.T) {
			m := loadNamed(t, name)
			all, _ := examplesBatch(t, m.Metadata())
			whole, err := m.Predict(context.Background(), all)
			if err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{1, 2, 3} {
				for start := 0; start+size <= all.Rows; start += size {
					part := &skl2go.Batch{Rows: size}
					for _, col := range all.Columns {
						part.Columns = append(part.Columns, skl2go.Column{Name: col.Name, Type: col.Type,
							Values: col.Slice(col.Type, start, start+size)})
					}
					got, err := m.Predict(context.Background(), part)
					if err != nil {
						t.Fatal(err)
					}
					for o := range got {
						perRow := len(got[o].Float64s()) / size
						if got[o].Shape[0] != int64(size) {
							t.Fatalf("output %s: shape %v for %d rows", got[o].Name, got[o].Shape, size)
						}
						want := whole[o].Float64s()[start*perRow : (start+size)*perRow]
						for k, v := range got[o].Float64s() {
							if math.Float64bits(v) != math.Float64bits(want[k]) {
								t.Errorf("output %s, rows %d-%d of %d: element %d is %v, within the whole batch %v",
									got[o].Name, start, start+size-1, all.Rows, k, v, want[k])
							}
						}
					}
				}
			}
		})
	}
}

// TestPredictInChunksAroundRun: the mirror's way of running (a few rows at
// a time, the CPU priority lowered around each ONNX Runtime call) gives
// the same answer as one run of every row, with one before and one after
// per run.
func TestPredictInChunksAroundRun(t *testing.T) {
	m := loadFixture(t)
	batch, _ := examplesBatch(t, m.Metadata())
	whole, err := m.Predict(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 2, 3, batch.Rows} {
		var before, after int
		ctx := skl2go.WithAroundRun(context.Background(), func() { before++ }, func() { after++ })
		got, err := skl2go.PredictInChunks(ctx, m, batch, chunk, func(context.Context) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		runs := (batch.Rows + chunk - 1) / chunk
		if before != runs || after != runs {
			t.Errorf("chunks of %d: %d befores and %d afters, want %d each", chunk, before, after, runs)
		}
		if !slices.Equal(got[0].Shape, whole[0].Shape) || !slices.Equal(got[0].Float64s(), whole[0].Float64s()) {
			t.Errorf("chunks of %d: %v %v, one run: %v %v", chunk, got[0].Shape, got[0].Float64s(), whole[0].Shape, whole[0].Float64s())
		}
	}
}
