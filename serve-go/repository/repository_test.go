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
	"skl2go/repository"
)

func fixtureModels(t *testing.T) string {
	t.Helper()
	dir, err := fixture.ModelsDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLatestPicksTheHighestVersionAndIgnoresOtherEntries(t *testing.T) {
	models, root := fixtureModels(t), t.TempDir()
	fixture.CopyVersion(t, models, root, 2)
	fixture.CopyVersion(t, models, root, 10)
	for _, name := range []string{".incoming-x1", "latest", "0", "011"} {
		os.MkdirAll(filepath.Join(root, fixture.Model, name), 0o755)
	}
	os.MkdirAll(filepath.Join(root, ".hidden-model"), 0o755)
	os.WriteFile(filepath.Join(root, "README.md"), []byte("notes"), 0o644)

	entries, err := repository.Latest(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Metadata.Version != 10 || entries[0].Dir != filepath.Join(root, fixture.Model, "10") {
		t.Fatalf("entries = %+v, want only %s version 10", entries, fixture.Model)
	}
	versions, _ := repository.Versions(filepath.Join(root, fixture.Model))
	if fmt.Sprint(versions) != "[2 10]" {
		t.Errorf("versions = %v, want [2 10]", versions)
	}
}

func TestLatestRefusesBrokenRepositories(t *testing.T) {
	models := fixtureModels(t)
	tests := []struct {
		name   string
		damage func(t *testing.T, root, version string)
		want   string
	}{
		{"empty repository", func(t *testing.T, root, v string) { os.RemoveAll(filepath.Join(root, fixture.Model)) }, "no models in"},
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
		}, "not a valid model name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			v := fixture.CopyVersion(t, models, root, 1)
			tt.damage(t, root, v)
			_, err := repository.Latest(root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
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
		{"a", 3, 0, `model "a" has no version 3 loaded (serving version 5)`},
		{"c", 0, 0, `model "c" not found (serving: a, b)`},
	}
	for _, tt := range tests {
		m, err := store.Model(tt.name, tt.version)
		if tt.err != "" {
			if skl2go.ErrorCode(err) != skl2go.ENOTFOUND || skl2go.ErrorMessage(err) != tt.err {
				t.Errorf("Model(%q, %d) err = %v, want ENOTFOUND %q", tt.name, tt.version, err, tt.err)
			}
			continue
		}
		if err != nil || m.Metadata().Version != tt.want {
			t.Errorf("Model(%q, %d) = %v, %v; want version %d", tt.name, tt.version, m, err, tt.want)
		}
	}
	got := fmt.Sprint(store.Models())
	if want := "[{a [2 5] 5} {b [1] 1}]"; got != want {
		t.Errorf("Models() = %s, want %s", got, want)
	}
}
