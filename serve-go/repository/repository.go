// Package repository reads the model repository on disk, the contract
// between the Python exporter and the server:
//
//	<root>/<name>/<version>/model.json
//	<root>/<name>/<version>/model.onnx
//
// A version is a directory named by a positive integer; anything else (such
// as the hidden directory an export writes into before renaming it) is not.
package repository

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"skl2go"
)

// Entry is a model version found on disk, its model.json checked.
type Entry struct {
	Dir      string
	Metadata *skl2go.Metadata
}

// ModelDir is a model's directory in the repository and its versions.
type ModelDir struct {
	Name     string
	Versions []int // ascending
}

// Scan lists the models under root and their versions. Directories whose
// names are not valid model names are returned as invalid paths: start-up
// refuses them, a reload ignores them. Hidden entries are skipped.
func Scan(root string) (models []ModelDir, invalid []string, err error) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return nil, nil, fmt.Errorf("model repository: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || d.Name()[0] == '.' {
			continue
		}
		name := d.Name()
		if !skl2go.ValidName(name) {
			invalid = append(invalid, filepath.Join(root, name))
			continue
		}
		versions, err := Versions(filepath.Join(root, name))
		if err != nil {
			return nil, nil, fmt.Errorf("model repository: %w", err)
		}
		models = append(models, ModelDir{Name: name, Versions: versions})
	}
	return models, invalid, nil
}

// Versions lists the version numbers in a model directory, ascending.
func Versions(modelDir string) ([]int, error) {
	dirs, err := os.ReadDir(modelDir)
	if err != nil {
		return nil, err
	}
	var versions []int
	for _, d := range dirs {
		v, err := strconv.Atoi(d.Name())
		if err != nil || v < 1 || !d.IsDir() || strconv.Itoa(v) != d.Name() {
			continue
		}
		versions = append(versions, v)
	}
	sort.Ints(versions)
	return versions, nil
}

// Read reads and checks one version: model.json parses, names the model and
// version its path does, and model.onnx exists with the recorded checksum.
func Read(root, name string, version int) (Entry, error) {
	dir := filepath.Join(root, name, strconv.Itoa(version))
	data, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", dir, err)
	}
	meta, err := skl2go.ParseMetadata(data)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", dir, err)
	}
	if meta.Name != name || meta.Version != version {
		return Entry{}, fmt.Errorf("%s: model.json names %s version %d, but the directory is %s version %d",
			dir, meta.Name, meta.Version, name, version)
	}
	onnxPath := filepath.Join(dir, filepath.Base(meta.Files.ONNX.Path))
	sum, err := fileSHA256(onnxPath)
	if err != nil {
		return Entry{}, fmt.Errorf("%s: %w", dir, err)
	}
	if meta.Files.ONNX.SHA256 != "" && sum != meta.Files.ONNX.SHA256 {
		return Entry{}, fmt.Errorf("%s: %s has sha256 %s, model.json records %s (altered or half-written file)",
			dir, filepath.Base(onnxPath), sum, meta.Files.ONNX.SHA256)
	}
	return Entry{Dir: dir, Metadata: meta}, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
