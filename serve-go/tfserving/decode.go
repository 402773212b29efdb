// Package tfserving is the v1 wire protocol, TensorFlow Serving's REST
// predict API as skl2go serves it at /v1/models/<name>[/versions/<v>]:predict:
// a request body decoded into a batch for a model, and the model's outputs
// encoded as the answer.
//
// A request gives rows, {"instances": [{input: value, …}, …]}, one object
// per row with one field per model input, answered {"predictions": […]};
// or columns, {"inputs": {input: [value, …], …}}, one array per model input
// with one value per row, answered {"outputs": …}: TF Serving's row and
// columnar forms. Well-formed rows take a single pass over the bytes
// (scanRequest); anything else goes through a token decoder that says what
// is wrong, naming the row or column and the field.
package tfserving

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// CheckContentType accepts application/json (any parameters) or no type.
func CheckContentType(value string) error {
	if value == "" {
		return nil
	}
	mediaType, _, err := mime.ParseMediaType(value)
	if err != nil || mediaType != "application/json" {
		return skl2go.Errorf(skl2go.EUNSUPPORTED, "Content-Type must be application/json, got %s", value)
	}
	return nil
}

// Request is a decoded predict request.
type Request struct {
	Batch *skl2go.Batch
	// Columnar is set when the request gave columns ({"inputs": …}); it is
	// then answered in columns ({"outputs": …}).
	Columnar bool
}

// DecodeRequest decodes a predict body, rows or columns, into a batch for
// meta's inputs. Every error it returns is a client error (*skl2go.Error
// with a 4xx code). The batch does not refer to body, which the caller may
// reuse.
func DecodeRequest(body []byte, meta *skl2go.Metadata, maxRows int) (Request, error) {
	if batch, ok := scanRequest(body, meta, maxRows); ok {
		return Request{Batch: batch}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	req, err := decodeRequest(dec, meta, maxRows)
	var clientErr *skl2go.Error
	if err != nil && !errors.As(err, &clientErr) {
		// The body is all in memory: whatever else the decoder says is
		// about the client's JSON, never a reason for a 500.
		return Request{}, skl2go.Errorf(skl2go.EINVALID, "malformed JSON: %v", err)
	}
	return req, err
}

func decodeRequest(dec *json.Decoder, meta *skl2go.Metadata, maxRows int) (Request, error) {
	var req Request
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return req, skl2go.Errorf(skl2go.EINVALID, `empty body: expected {"instances": [...]}`)
		}
		return req, bodyError(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return req, skl2go.Errorf(skl2go.EINVALID, `body must be a JSON object {"instances": [...]}`)
	}
	form := "" // "instances" or "inputs", once read
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, bodyError(err)
		}
		key := tok.(string)
		switch {
		case key != "instances" && key != "inputs":
			return req, skl2go.Errorf(skl2go.EINVALID, `unknown field %q in the body: expected "instances" (rows) or "inputs" (columns)`, key)
		case key == form:
			return req, skl2go.Errorf(skl2go.EINVALID, `%q given twice`, key)
		case form != "":
			return req, skl2go.Errorf(skl2go.EINVALID, `the body has both "instances" and "inputs": send rows or columns, not both`)
		}
		form = key
		if key == "inputs" {
			req.Columnar = true
			req.Batch, err = decodeColumns(dec, meta, maxRows)
		} else {
			req.Batch, err = DecodeInstances(dec, meta, maxRows)
		}
		if err != nil {
			return req, err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return req, bodyError(err)
	}
	if form == "" {
		return req, skl2go.Errorf(skl2go.EINVALID, `missing field "instances" (rows; or "inputs", columns)`)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return req, bodyError(err)
		}
		return req, skl2go.Errorf(skl2go.EINVALID, "malformed JSON: data after the top-level object at byte %d", dec.InputOffset())
	}
	return req, nil
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

// DecodeInstances reads a JSON array of instances (objects with one field
// per model input) from dec, which must be positioned at the array and use
// json.Decoder.UseNumber. It refuses, with an EINVALID error naming the row
// and field, anything that does not map exactly onto the model's inputs:
// missing, unknown, duplicate or null fields, wrong JSON types, non-integral
// or out-of-range numbers. More than maxRows rows is ETOOLARGE. model.json
// records its examples as such instances.
func DecodeInstances(dec *json.Decoder, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	if err := jsonwire.ExpectDelim(dec, '[', "instances", "an array of objects"); err != nil {
		return nil, err
	}
	batch := &skl2go.Batch{Columns: make([]skl2go.Column, len(meta.Inputs))}
	for i, in := range meta.Inputs {
		batch.Columns[i] = in.NewColumn()
	}
	seen := make([]bool, len(meta.Inputs))
	for dec.More() {
		row := batch.Rows
		if row >= maxRows {
			return nil, skl2go.Errorf(skl2go.ETOOLARGE, "too many instances: at most %d per request", maxRows)
		}
		where := fmt.Sprintf("instances[%d]", row)
		if err := jsonwire.ExpectDelim(dec, '{', where, "an object"); err != nil {
			return nil, err
		}
		clear(seen)
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, jsonwire.SyntaxError(dec, err)
			}
			key := tok.(string) // object keys are always strings
			i, ok := meta.InputIndex(key)
			if !ok {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s.%s: unknown field (model %s expects %s)", where, key, meta.Name, meta.InputNames())
			}
			if seen[i] {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s.%s: given twice", where, key)
			}
			seen[i] = true
			if err := decodeValue(dec, &batch.Columns[i], where+"."+key); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing '}'
			return nil, jsonwire.SyntaxError(dec, err)
		}
		for i, ok := range seen {
			if !ok {
				return nil, skl2go.Errorf(skl2go.EINVALID, "%s.%s: missing", where, meta.Inputs[i].Name)
			}
		}
		batch.Rows++
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, jsonwire.SyntaxError(dec, err)
	}
	if batch.Rows == 0 {
		return nil, skl2go.Errorf(skl2go.EINVALID, "instances: must contain at least one instance")
	}
	return batch, nil
}

// decodeColumns reads TF Serving's columnar inputs, {input: [value, …],
// …}, from dec, positioned at the object: one array per model input, each
// with one value per row, values checked as DecodeInstances checks fields.
// Errors name the input and the row ("inputs.trip_distance[1]: …").
func decodeColumns(dec *json.Decoder, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, error) {
	if err := jsonwire.ExpectDelim(dec, '{', "inputs", `an object of columns {"input": [one value per row], …}`); err != nil {
		return nil, err
	}
	batch := &skl2go.Batch{Rows: -1, Columns: make([]skl2go.Column, len(meta.Inputs))}
	seen := make([]bool, len(meta.Inputs))
	first := "" // the first column read, whose length the others must have
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonwire.SyntaxError(dec, err)
		}
		key := tok.(string)
		i, ok := meta.InputIndex(key)
		if !ok {
			return nil, skl2go.Errorf(skl2go.EINVALID, "inputs.%s: unknown input (model %s expects %s)", key, meta.Name, meta.InputNames())
		}
		if seen[i] {
			return nil, skl2go.Errorf(skl2go.EINVALID, "inputs.%s: given twice", key)
		}
		seen[i] = true
		where := "inputs." + key
		if err := jsonwire.ExpectDelim(dec, '[', where, "an array with one value per row"); err != nil {
			return nil, err
		}
		col := &batch.Columns[i]
		*col = meta.Inputs[i].NewColumn()
		rows := 0
		for ; dec.More(); rows++ {
			if rows == maxRows {
				return nil, skl2go.Errorf(skl2go.ETOOLARGE, "too many rows: at most %d per request", maxRows)
			}
			if err := decodeValue(dec, col, fmt.Sprintf("%s[%d]", where, rows)); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing ']'
			return nil, jsonwire.SyntaxError(dec, err)
		}
		switch {
		case rows == 0:
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: no values: send one per row", where)
		case batch.Rows >= 0 && rows != batch.Rows:
			return nil, skl2go.Errorf(skl2go.EINVALID, "%s: %d values, but inputs.%s has %d: every input has one value per row", where, rows, first, batch.Rows)
		}
		if batch.Rows < 0 {
			batch.Rows, first = rows, key
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonwire.SyntaxError(dec, err)
	}
	for i, ok := range seen {
		if !ok {
			return nil, skl2go.Errorf(skl2go.EINVALID, "inputs.%s: missing (model %s expects %s)", meta.Inputs[i].Name, meta.Name, meta.InputNames())
		}
	}
	return batch, nil
}

// decodeValue reads one JSON value and appends it to col.
func decodeValue(dec *json.Decoder, col *skl2go.Column, where string) error {
	tok, err := dec.Token()
	if err != nil {
		return valueSyntaxError(dec, err, where)
	}
	if err := col.AppendJSON(tok); err != nil {
		return skl2go.Errorf(skl2go.EINVALID, "%s: %v", where, err)
	}
	return nil
}

// valueSyntaxError is a syntax error in a field's value: it names the
// field, and says what to send instead of NaN or Infinity, which clients
// often write but JSON does not have.
func valueSyntaxError(dec *json.Decoder, err error, where string) error {
	var syn *json.SyntaxError
	nonFinite := errors.As(err, &syn) &&
		(strings.Contains(syn.Error(), "invalid character 'N'") || strings.Contains(syn.Error(), "invalid character 'I'"))
	err = jsonwire.SyntaxError(dec, err)
	var e *skl2go.Error
	if !errors.As(err, &e) {
		return err
	}
	if nonFinite {
		return skl2go.Errorf(e.Code, "%s: %s (NaN and Infinity are not JSON numbers: send a finite number)", where, e.Message)
	}
	return skl2go.Errorf(e.Code, "%s: %s", where, e.Message)
}
