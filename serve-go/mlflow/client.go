// Package mlflow serves the model versions an MLflow model registry's alias
// points to. It speaks MLflow's REST API and reads artifacts through the
// tracking server's artifact proxy (`mlflow server --serve-artifacts`) only,
// with net/http: the server needs no Python and no cloud SDK.
//
// A Poller asks the registry, every few seconds, which version each
// registered model's alias (champion by default) points to. A new version
// is downloaded into a local cache in the model repository's layout
// (<cache>/<name>/<version>/model.onnx and model.json, the version in
// model.json set to the registry's version number), then handed to the
// repository store, which loads and checks it exactly as a local version
// (sha256, graph against model.json, replay of the recorded examples) and
// swaps it in. A version that fails, or whose task or inputs differ from
// the version serving, is refused and the version serving keeps serving.
// When the registry is down or slow nothing changes: errors are logged and
// counted, and polls back off. A replica that starts while the registry is
// down serves the versions it cached last.
package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Credentials are read from MLflow's own environment variables, as the
// Python client reads them. They go in request headers only: never logged.
const (
	EnvToken    = "MLFLOW_TRACKING_TOKEN"
	EnvUsername = "MLFLOW_TRACKING_USERNAME"
	EnvPassword = "MLFLOW_TRACKING_PASSWORD"
)

// apiTimeout bounds one REST call; a slow registry is an error like a down one.
const apiTimeout = 10 * time.Second

// ErrNotFound is returned when the registry has no such model, version or
// alias (HTTP 404, RESOURCE_DOES_NOT_EXIST).
var ErrNotFound = errors.New("not found in the registry")

// ModelVersion is a registered model version, as the registry describes it.
type ModelVersion struct {
	Name    string
	Version int
	RunID   string
	Status  string // READY once the registry has its files
}

// Client talks to an MLflow tracking server's REST API.
type Client struct {
	base string // no trailing slash
	http *http.Client
	auth func(*http.Request)
}

// NewClient returns a client of the tracking server at rawURL, with
// credentials from getenv (MLFLOW_TRACKING_TOKEN as a bearer token, or
// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD as basic auth).
func NewClient(rawURL string, getenv func(string) string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registry URL must be http(s)://host:port, got %q", rawURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("registry URL %s carries credentials: set %s and %s (or %s) instead",
			u.Redacted(), EnvUsername, EnvPassword, EnvToken)
	}
	if hc == nil {
		hc = &http.Client{}
	}
	c := &Client{base: strings.TrimRight(u.String(), "/"), http: hc, auth: func(*http.Request) {}}
	token, user, password := getenv(EnvToken), getenv(EnvUsername), getenv(EnvPassword)
	switch {
	case token != "":
		c.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
	case user != "" || password != "":
		c.auth = func(r *http.Request) { r.SetBasicAuth(user, password) }
	}
	return c, nil
}

// URL is the tracking server's address, for logs.
func (c *Client) URL() string { return c.base }

// APIError is an error answer of the REST API.
type APIError struct {
	Path    string
	Status  int
	Code    string `json:"error_code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d %s: %s", e.Path, e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) true for the registry's "does not exist".
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && (e.Status == http.StatusNotFound || e.Code == "RESOURCE_DOES_NOT_EXIST")
}

// get calls GET path?query and decodes the JSON answer into out.
func (c *Client) get(ctx context.Context, path string, query url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	resp, err := c.do(ctx, path, query)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", path, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: the registry answered something that is not its JSON: %w", path, err)
	}
	return nil
}

// do sends GET path?query and returns a 200 answer; any other status is an
// error (ErrNotFound for 404) carrying the registry's message.
func (c *Client) do(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error names the URL, which holds no credentials (NewClient refuses them).
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &APIError{Path: path, Status: resp.StatusCode}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(e)
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return nil, e
}

type versionJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	RunID   string `json:"run_id"`
	Status  string `json:"status"`
}

func (v versionJSON) parse() (ModelVersion, error) {
	n, err := strconv.Atoi(v.Version)
	if err != nil || n < 1 {
		return ModelVersion{}, fmt.Errorf("the registry answered version %q for %s, not a positive integer", v.Version, v.Name)
	}
	return ModelVersion{Name: v.Name, Version: n, RunID: v.RunID, Status: v.Status}, nil
}

// Alias returns the version name@alias points to (ErrNotFound if the model
// or the alias does not exist).
func (c *Client) Alias(ctx context.Context, name, alias string) (ModelVersion, error) {
	var out struct {
		ModelVersion versionJSON `json:"model_version"`
	}
	err := c.get(ctx, "/api/2.0/mlflow/registered-models/alias", url.Values{"name": {name}, "alias": {alias}}, &out)
	// An alias the model does not have is a 400 INVALID_PARAMETER_VALUE "… not found".
	var e *APIError
	if errors.As(err, &e) && e.Code == "INVALID_PARAMETER_VALUE" && strings.Contains(e.Message, "not found") {
		return ModelVersion{}, fmt.Errorf("%w: %s", ErrNotFound, e.Message)
	}
	if err != nil {
		return ModelVersion{}, err
	}
	return out.ModelVersion.parse()
}

// RegisteredModel is what the registry holds about a registered model
// beside its versions: its tags and where each of its aliases points.
type RegisteredModel struct {
	Name    string
	Tags    map[string]string
	Aliases map[string]int
}

// RegisteredModel returns the tags and aliases of the registered model name
// (ErrNotFound if there is none).
func (c *Client) RegisteredModel(ctx context.Context, name string) (RegisteredModel, error) {
	var out struct {
		Model struct {
			Tags []struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			} `json:"tags"`
			Aliases []struct {
				Alias   string `json:"alias"`
				Version string `json:"version"`
			} `json:"aliases"`
		} `json:"registered_model"`
	}
	if err := c.get(ctx, "/api/2.0/mlflow/registered-models/get", url.Values{"name": {name}}, &out); err != nil {
		return RegisteredModel{}, err
	}
	rm := RegisteredModel{Name: name, Tags: map[string]string{}, Aliases: map[string]int{}}
	for _, t := range out.Model.Tags {
		rm.Tags[t.Key] = t.Value
	}
	for _, a := range out.Model.Aliases {
		v, err := strconv.Atoi(a.Version)
		if err != nil || v < 1 {
			return RegisteredModel{}, fmt.Errorf("the registry answered version %q for %s@%s, not a positive integer", a.Version, name, a.Alias)
		}
		rm.Aliases[a.Alias] = v
	}
	return rm, nil
}

// RegisteredModels lists the names of every registered model.
func (c *Client) RegisteredModels(ctx context.Context) ([]string, error) {
	var names []string
	token := ""
	for {
		q := url.Values{"max_results": {"1000"}}
		if token != "" {
			q.Set("page_token", token)
		}
		var out struct {
			Models []struct {
				Name string `json:"name"`
			} `json:"registered_models"`
			Next string `json:"next_page_token"`
		}
		if err := c.get(ctx, "/api/2.0/mlflow/registered-models/search", q, &out); err != nil {
			return nil, err
		}
		for _, m := range out.Models {
			names = append(names, m.Name)
		}
		if out.Next == "" {
			return names, nil
		}
		token = out.Next
	}
}

// DownloadURI returns where a version's files are (the registered model's
// artifact location, such as mlflow-artifacts:/1/models/m-…/artifacts).
func (c *Client) DownloadURI(ctx context.Context, name string, version int) (string, error) {
	var out struct {
		URI string `json:"artifact_uri"`
	}
	err := c.get(ctx, "/api/2.0/mlflow/model-versions/get-download-uri",
		url.Values{"name": {name}, "version": {strconv.Itoa(version)}}, &out)
	if err == nil && out.URI == "" {
		err = fmt.Errorf("the registry gave no download URI for %s version %d", name, version)
	}
	return out.URI, err
}

// proxyPath turns an artifact URI into its path on the artifact proxy:
// mlflow-artifacts:/1/models/m-x/artifacts -> 1/models/m-x/artifacts. Only
// proxied artifacts can be read: other schemes (s3://, file://) need the
// store's own client.
func proxyPath(artifactURI string) (string, error) {
	u, err := url.Parse(artifactURI)
	if err != nil || u.Scheme != "mlflow-artifacts" {
		return "", fmt.Errorf("artifact location %q is not served by the tracking server's artifact proxy "+
			"(mlflow-artifacts:/…): start mlflow server with --serve-artifacts", artifactURI)
	}
	p := strings.Trim(u.Path, "/")
	if p == "" || strings.Contains(p, "..") {
		return "", fmt.Errorf("artifact location %q has no usable path", artifactURI)
	}
	return p, nil
}

// Download copies the artifact file under artifactURI to w, through the
// artifact proxy. The context bounds the whole transfer.
func (c *Client) Download(ctx context.Context, artifactURI, file string, w io.Writer) (int64, error) {
	dir, err := proxyPath(artifactURI)
	if err != nil {
		return 0, err
	}
	path := "/api/2.0/mlflow-artifacts/artifacts/" + (&url.URL{Path: dir + "/" + file}).EscapedPath()
	resp, err := c.do(ctx, path, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", path, err)
	}
	return n, nil
}
