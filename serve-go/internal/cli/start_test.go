package cli

import (
	"flag"
	"io"
	"reflect"
	"testing"
	"time"
)

func TestRegistryFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		models  bool // --registry-models defined
		want    Registry
		wantErr string
	}{
		{name: "defaults", models: true, want: Registry{Alias: "champion", Poll: 5 * time.Second}},
		{name: "flags", models: true, args: []string{"--registry", "http://r:5000", "--registry-models", "a, b", "--registry-poll", "1s"},
			want: Registry{URL: "http://r:5000", Models: []string{"a", "b"}, Alias: "champion", Poll: time.Second}},
		{name: "environment", env: map[string]string{"SKL2GO_REGISTRY": "http://r", "SKL2GO_REGISTRY_ALIAS": "prod"},
			want: Registry{URL: "http://r", Alias: "prod", Poll: 5 * time.Second}},
		{name: "no models flag", args: []string{"--registry-models", "a"}, wantErr: "flag provided but not defined: -registry-models"},
		{name: "bad values", models: true, args: []string{"--registry-models", "../x", "--registry-alias", "", "--registry-poll", "1ms"},
			wantErr: `--registry-poll must be a duration of at least 100ms such as 20s, got "1ms"` + "\n" +
				`--registry-models: "../x" is not a valid model name` + "\n" + "--registry-alias must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var r Registry
			finish := RegistryFlags(fs, Env(func(k string) string { return tc.env[k] }), &r, tc.models)
			err := fs.Parse(tc.args)
			if err == nil {
				var checks Checks
				finish(&checks)
				err = checks.Err()
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(r, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", r, err, tc.want)
			}
		})
	}
}
