package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"

	"skl2go"
)

// handlePredict serves POST /v1/models/{name}[/versions/{v}]:predict.
func (s *Server) handlePredict(w http.ResponseWriter, r *http.Request, name string, version int) {
	s.serveInference(w, r, name, version, "v1", s.predict)
}

// predict decodes, runs and encodes one v1 predict request.
func (s *Server) predict(w http.ResponseWriter, r *http.Request, model skl2go.Model, inf *inference) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	buf := s.bodies.Get().(*bytes.Buffer)
	defer s.releaseBody(buf)
	body, err := readBodyInto(buf, w, r, s.config.MaxBodyBytes)
	if err != nil {
		return err
	}
	batch, err := DecodeRequestBytes(body, model.Metadata(), s.config.MaxRows)
	if err != nil {
		return err
	}
	outputs, err := inf.run(r.Context(), model, batch)
	if err != nil {
		return err
	}
	meta := model.Metadata()
	resp, err := AppendPredictions(make([]byte, 0, 64+16*batch.Rows), outputs, batch.Rows, meta.Name, meta.Version)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(resp)))
	w.WriteHeader(http.StatusOK)
	w.Write(resp)
	return nil
}

// checkContentType accepts application/json (any parameters) or no type.
func checkContentType(value string) error {
	if value == "" {
		return nil
	}
	mediaType, _, err := mime.ParseMediaType(value)
	if err != nil || mediaType != "application/json" {
		return skl2go.Errorf(skl2go.EUNSUPPORTED, "Content-Type must be application/json, got %s", value)
	}
	return nil
}

// DecodeRequest reads a predict body, {"instances": [ {field: value, …}, … ]},
// into a batch for meta's inputs. Every error it returns is a client error
// (*skl2go.Error with a 4xx code): a body that does not read to its end
// (over the size limit, too slow, cut off) is the client's problem too.
func DecodeRequest(body io.Reader, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(body); err != nil {
		return nil, bodyReadError(err, buf.Len())
	}
	return DecodeRequestBytes(buf.Bytes(), meta, maxRows)
}

// DecodeRequestBytes decodes a predict body held in memory. Well-formed
// bodies take Metadata.ScanRequest's single pass; anything it does not
// accept goes through the token decoder, which says what is wrong.
func DecodeRequestBytes(body []byte, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	if batch, ok := meta.ScanRequest(body, maxRows); ok {
		return batch, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	batch, err := decodeRequest(dec, meta, maxRows)
	var clientErr *skl2go.Error
	if err != nil && !errors.As(err, &clientErr) {
		// The body is all in memory: whatever else the decoder says is
		// about the client's JSON, never a reason for a 500.
		return nil, skl2go.Errorf(skl2go.EINVALID, "malformed JSON: %v", err)
	}
	return batch, err
}

// bodyReadError turns an error reading a request body, after read bytes,
// into a client error.
func bodyReadError(err error, read int) error {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return skl2go.Errorf(skl2go.ETOOLARGE, "request body too large: the limit is %d bytes", tooLarge.Limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return skl2go.Errorf(skl2go.ETIMEOUT, "request body not received in time (after %d bytes)", read)
	}
	return skl2go.Errorf(skl2go.EINVALID, "reading the request body: %v", err)
}

func decodeRequest(dec *json.Decoder, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, skl2go.Errorf(skl2go.EINVALID, `empty body: expected {"instances": [...]}`)
		}
		return nil, bodyError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, skl2go.Errorf(skl2go.EINVALID, `body must be a JSON object {"instances": [...]}`)
	}
	var batch *skl2go.Batch
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bodyError(err)
		}
		key := tok.(string)
		if key != "instances" {
			return nil, skl2go.Errorf(skl2go.EINVALID, `unknown field %q in the body: expected only "instances"`, key)
		}
		if batch != nil {
			return nil, skl2go.Errorf(skl2go.EINVALID, `"instances" given twice`)
		}
		if batch, err = meta.DecodeInstances(dec, maxRows); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, bodyError(err)
	}
	if batch == nil {
		return nil, skl2go.Errorf(skl2go.EINVALID, `missing field "instances"`)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, bodyError(err)
		}
		return nil, skl2go.Errorf(skl2go.EINVALID, "malformed JSON: data after the top-level object at byte %d", dec.InputOffset())
	}
	return batch, nil
}

func bodyError(err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return skl2go.Errorf(skl2go.EINVALID, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF): // "{" alone ends in io.EOF
		return skl2go.Errorf(skl2go.EINVALID, "malformed JSON: unexpected end of body")
	}
	return err
}

// AppendPredictions appends the response body to buf:
// {"predictions": [...], "model": name, "version": v}. One output gives one
// value per row (or an array when it has several columns); several outputs
// give one object per row, keyed by output name (a classifier's
// {"label": 1, "probabilities": [p0, p1]}).
func AppendPredictions(buf []byte, outputs []skl2go.Output, rows int, name string, version int) ([]byte, error) {
	buf = append(buf, `{"predictions":[`...)
	for row := 0; row < rows; row++ {
		if row > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = AppendPrediction(buf, outputs, row); err != nil {
			return nil, err
		}
	}
	buf = append(buf, `],"model":`...)
	buf = appendString(buf, name)
	buf = append(buf, `,"version":`...)
	buf = strconv.AppendInt(buf, int64(version), 10)
	return append(buf, '}'), nil
}

// AppendPrediction appends one row's prediction as it appears in
// "predictions" (AppendPredictions): the value of the one output, or an
// object keyed by output name. The stream consumer writes it per event.
func AppendPrediction(buf []byte, outputs []skl2go.Output, row int) ([]byte, error) {
	if len(outputs) == 1 {
		return appendRow(buf, &outputs[0], row)
	}
	buf = append(buf, '{')
	for i := range outputs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, outputs[i].Name)
		buf = append(buf, ':')
		var err error
		if buf, err = appendRow(buf, &outputs[i], row); err != nil {
			return nil, err
		}
	}
	return append(buf, '}'), nil
}

// appendRow appends one row of an output: a scalar when the row has one
// value, else an array.
func appendRow(buf []byte, out *skl2go.Output, row int) ([]byte, error) {
	width := 1
	for _, d := range out.Shape[1:] {
		width *= int(d)
	}
	if width != 1 {
		buf = append(buf, '[')
	}
	for i := row * width; i < (row+1)*width; i++ {
		if i > row*width {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendValue(buf, out, i); err != nil {
			return nil, err
		}
	}
	if width != 1 {
		buf = append(buf, ']')
	}
	return buf, nil
}

func appendValue(buf []byte, out *skl2go.Output, i int) ([]byte, error) {
	switch out.Type {
	case skl2go.Float32:
		return appendFloat(buf, float64(out.Float32[i]), 32, out, i)
	case skl2go.Float64:
		return appendFloat(buf, out.Float64[i], 64, out, i)
	case skl2go.Int64:
		return strconv.AppendInt(buf, out.Int64[i], 10), nil
	case skl2go.Int32:
		return strconv.AppendInt(buf, int64(out.Int32[i]), 10), nil
	case skl2go.Bool:
		return strconv.AppendBool(buf, out.Bool[i]), nil
	case skl2go.String:
		return appendString(buf, out.String[i]), nil
	}
	return nil, errors.New("output " + out.Name + ": unsupported type " + string(out.Type))
}

// appendFloat writes the shortest text that reads back as the same float of
// that size. JSON has no NaN or Infinity. A model produces them from inputs
// far outside its training data (a float32 linear model overflows on a
// distance of 1e38): the request is refused, naming the output element.
func appendFloat(buf []byte, f float64, bits int, out *skl2go.Output, i int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, skl2go.Errorf(skl2go.EINVALID, "output %s, element %d: the model produced %v, which JSON cannot carry; "+
			"the inputs are probably far outside the range the model was trained on", skl2go.Quote(out.Name), i, f)
	}
	return strconv.AppendFloat(buf, f, 'g', -1, bits), nil
}

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // escapes as encoding/json does; a string always marshals
			return append(buf, quoted...)
		}
	}
	buf = append(buf, '"') // plain ASCII (model and output names): nothing to escape
	buf = append(buf, s...)
	return append(buf, '"')
}
