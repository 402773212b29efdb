package grpc_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCode regenerates inferencepb from its .proto as `make proto`
// does (protoc from the pinned grpcio-tools in .venv-proto, the plugins
// from go.mod's tool block) and fails if the committed files differ.
func TestGeneratedCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the protoc plugins")
	}
	python, err := filepath.Abs("../../.venv-proto/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(python); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing: make test-go makes it (make proto's venv)", python)
		}
		t.Skipf("%s is missing: run make proto once", python)
	}
	tmp := t.TempDir()
	build := exec.Command("go", "build", "-o", tmp+"/", "google.golang.org/protobuf/cmd/protoc-gen-go", "google.golang.org/grpc/cmd/protoc-gen-go-grpc")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the plugins: %v\n%s", err, out)
	}
	protoc := exec.Command(python, "-m", "grpc_tools.protoc", "-I", "inferencepb",
		"--plugin=protoc-gen-go="+tmp+"/protoc-gen-go", "--go_out="+tmp, "--go_opt=paths=source_relative",
		"--plugin=protoc-gen-go-grpc="+tmp+"/protoc-gen-go-grpc", "--go-grpc_out="+tmp, "--go-grpc_opt=paths=source_relative",
		"inferencepb/grpc_predict_v2.proto")
	if out, err := protoc.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	for _, name := range []string{"grpc_predict_v2.pb.go", "grpc_predict_v2_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("inferencepb", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("inferencepb/%s differs from what its .proto generates: run make proto and commit", name)
		}
	}
}
