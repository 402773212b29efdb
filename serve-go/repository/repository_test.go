package repository_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"skl2go"
	"skl2go/internal/fixture"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

func TestScanListsModelsAndVersionsAndIgnoresOtherEntries(t *testing.T) {
	root := t.TempDir()
	fixture.CopyVersion(t, models, root, 2)
	fixture.CopyVersion(t, models, root, 10)
	for _, name := range []string{".incoming-x1", "latest", "0", "011"} {
		os.MkdirAll(filepath.Join(root, fixture.Model, name), 0o755)
	}
	os.WriteFile(filepath.Join(root, fixture.Model, "3"), []byte("a file, not a version"), 0o644)
	os.MkdirAll(filepath.Join(root, ".hidden-model"), 0o755)
	os.MkdirAll(filepath.Join(root, "bad name", "1"), 0o755)
	os.WriteFile(filepath.Join(root, "README.md"), []byte("notes"), 0o644)

	found, invalid, err := repository.Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(found); got != "[{trip_duration [2 10]}]" {
		t.Errorf("Scan = %s, want [{trip_duration [2 10]}]", got)
	}
	if len(invalid) != 1 || invalid[0] != filepath.Join(root, "bad name") {
		t.Errorf("invalid = %v, want the \"bad name\" directory", invalid)
	}
	if _, _, err := repository.Scan(filepath.Join(root, "nowhere")); err == nil {
		t.Error("Scan of a missing repository succeeded")
	}
}

// fakeLoad loads nothing: it returns a fake model for the entry Read checked.
func fakeLoad(e repository.Entry) (skl2go.Model, error) {
	return &fakeModel{meta: *e.Metadata}, nil
}

func TestOpenServesTheLatestVersions(t *testing.T) {
	root := t.TempDir()
	for _, v := range []int{1, 2, 3} {
		fixture.CopyVersion(t, models, root, v)
	}
	for keep, want := range map[int]string{1: "[{trip_duration [3] 3}]", 2: "[{trip_duration [2 3] 3}]", 5: "[{trip_duration [1 2 3] 3}]"} {
		store, err := repository.Open(root, fakeLoad, repository.Options{Keep: keep})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(store.Models()); got != want {
			t.Errorf("keep %d: Models() = %s, want %s", keep, got, want)
		}
		store.Close()
	}
}

func TestOpenRefusesBrokenRepositories(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, root, version string)
		want   string
	}{
		{"empty repository", func(t *testing.T, root, v string) { os.RemoveAll(filepath.Join(root, fixture.Model)) }, "no models in"},
		{"missing repository", func(t *testing.T, root, v string) { os.RemoveAll(root) }, "model repository: open"},
		{"model without versions", func(t *testing.T, root, v string) { os.RemoveAll(v) }, "no versions"},
		{"missing model.json", func(t *testing.T, root, v string) { os.Remove(filepath.Join(v, "model.json")) }, "model.json: no such file"},
		{"missing model.onnx", func(t *testing.T, root, v string) { os.Remove(filepath.Join(v, "model.onnx")) }, "model.onnx: no such file"},
		{"model.json not JSON", func(t *testing.T, root, v string) { os.WriteFile(filepath.Join(v, "model.json"), []byte("{"), 0o644) }, "not valid JSON"},
		{"altered model.onnx", func(t *testing.T, root, v string) {
			f, _ := os.OpenFile(filepath.Join(v, "model.onnx"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0})
			f.Close()
		}, "altered or half-written"},
		{"name disagrees with the path", func(t *testing.T, root, v string) {
			fixture.EditMetadata(t, v, func(m map[string]any) { m["name"] = "other" })
		}, "model.json names other version 1, but the directory is trip_duration version 1"},
		{"invalid model directory name", func(t *testing.T, root, v string) {
			os.MkdirAll(filepath.Join(root, "bad name", "1"), 0o755)
		}, "bad name: not a valid model name"},
		{"model.json disagrees with the graph", func(t *testing.T, root, v string) {
			fixture.EditMetadata(t, v, func(m map[string]any) {
				m["inputs"].([]any)[2].(map[string]any)["type"] = "tensor(double)"
			})
		}, `model.json disagrees with the graph: input "trip_distance"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			v := fixture.CopyVersion(t, models, root, 1)
			tt.damage(t, root, v)
			store, err := repository.Open(root, func(e repository.Entry) (skl2go.Model, error) {
				return runtime.Load(e.Dir, e.Metadata)
			}, repository.Options{})
			if err == nil {
				store.Close()
				t.Fatalf("opened a broken repository; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

type fakeModel struct{ meta skl2go.Metadata }

func (f *fakeModel) Metadata() *skl2go.Metadata { return &f.meta }
func (f *fakeModel) Predict(context.Context, *skl2go.Batch) ([]skl2go.Output, error) {
	return nil, nil
}
func (f *fakeModel) Close() error { return nil }

func fake(name string, version int) *fakeModel {
	return &fakeModel{skl2go.Metadata{Name: name, Version: version}}
}

func TestStore(t *testing.T) {
	store := repository.NewStore(fake("b", 1), fake("a", 2), fake("a", 5))
	tests := []struct {
		name    string
		version int
		want    int
		err     string
	}{
		{"a", 0, 5, ""},
		{"a", 2, 2, ""},
		{"a", 3, 0, `model "a" has no version 3 loaded (serving versions 2, 5)`},
		{"b", 2, 0, `model "b" has no version 2 loaded (serving version 1)`},
		{"c", 0, 0, `model "c" not found (serving: a, b)`},
	}
	for _, tt := range tests {
		m, release, err := store.Acquire(tt.name, tt.version)
		if tt.err != "" {
			if skl2go.ErrorCode(err) != skl2go.ENOTFOUND || skl2go.ErrorMessage(err) != tt.err {
				t.Errorf("Acquire(%q, %d) err = %v, want ENOTFOUND %q", tt.name, tt.version, err, tt.err)
			}
			continue
		}
		if err != nil || m.Metadata().Version != tt.want {
			t.Errorf("Acquire(%q, %d) = %v, %v; want version %d", tt.name, tt.version, m, err, tt.want)
			continue
		}
		release()
	}
	got := fmt.Sprint(store.Models())
	if want := "[{a [2 5] 5} {b [1] 1}]"; got != want {
		t.Errorf("Models() = %s, want %s", got, want)
	}
}
