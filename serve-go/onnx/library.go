// Package onnx runs models with ONNX Runtime through
// github.com/yalue/onnxruntime_go, on the libonnxruntime.so shipped inside
// the onnxruntime Python wheel, so export checks and serving use one runtime.
package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// libraryGlob is where the onnxruntime wheel puts the library in a venv.
const libraryGlob = ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*"

// FindLibrary returns explicit if it is set, else the libonnxruntime.so of
// the nearest .venv above the working directory or the executable.
func FindLibrary(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("ONNX Runtime library %s: %w", explicit, err)
		}
		return explicit, nil
	}
	var starts, looked []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			pattern := filepath.Join(dir, libraryGlob)
			looked = append(looked, pattern)
			if lib := newest(pattern); lib != "" {
				return lib, nil
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found (set --ort-lib or SKL2GO_ORT_LIB, or run `make venv`); looked for %s",
		strings.Join(looked, ", "))
}

// newest returns the match with the longest name (libonnxruntime.so.1.32.0
// over a bare libonnxruntime.so link), or "".
func newest(pattern string) string {
	matches, _ := filepath.Glob(pattern)
	var libs []string
	for _, m := range matches {
		if !strings.Contains(filepath.Base(m), "providers") {
			libs = append(libs, m)
		}
	}
	if len(libs) == 0 {
		return ""
	}
	sort.Slice(libs, func(i, j int) bool {
		return len(libs[i]) > len(libs[j]) || (len(libs[i]) == len(libs[j]) && libs[i] > libs[j])
	})
	return libs[0]
}
