package skl2go

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// DecodeInstances reads a JSON array of instances (objects with one field
// per model input) from dec, which must be positioned at the array and use
// json.Decoder.UseNumber. It refuses, with an EINVALID error naming the row
// and field, anything that does not map exactly onto the model's inputs:
// missing, unknown, duplicate or null fields (a nullable input takes null
// as NaN), wrong JSON types, non-integral or out-of-range numbers. More
// than maxRows rows is ETOOLARGE.
func (m *Metadata) DecodeInstances(dec *json.Decoder, maxRows int) (*Batch, error) {
	if err := expectDelim(dec, '[', "instances", "an array of objects"); err != nil {
		return nil, err
	}
	batch := &Batch{Columns: make([]Column, len(m.Inputs))}
	for i, in := range m.Inputs {
		batch.Columns[i] = in.NewColumn()
	}
	seen := make([]bool, len(m.Inputs))
	for dec.More() {
		row := batch.Rows
		if row >= maxRows {
			return nil, Errorf(ETOOLARGE, "too many instances: at most %d per request", maxRows)
		}
		where := fmt.Sprintf("instances[%d]", row)
		if err := expectDelim(dec, '{', where, "an object"); err != nil {
			return nil, err
		}
		clear(seen)
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, syntaxError(dec, err)
			}
			key := tok.(string) // object keys are always strings
			i, ok := m.inputIndex[key]
			if !ok {
				return nil, Errorf(EINVALID, "%s.%s: unknown field (model %s expects %s)", where, key, m.Name, m.InputNames())
			}
			if seen[i] {
				return nil, Errorf(EINVALID, "%s.%s: given twice", where, key)
			}
			seen[i] = true
			if err := decodeValue(dec, &batch.Columns[i], where+"."+key); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil { // the closing '}'
			return nil, syntaxError(dec, err)
		}
		for i, ok := range seen {
			if !ok {
				return nil, Errorf(EINVALID, "%s.%s: missing", where, m.Inputs[i].Name)
			}
		}
		batch.Rows++
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return nil, syntaxError(dec, err)
	}
	if batch.Rows == 0 {
		return nil, Errorf(EINVALID, "instances: must contain at least one instance")
	}
	return batch, nil
}

// InputNames lists the model's input names, for messages.
func (m *Metadata) InputNames() string { return tensorNames(m.Inputs) }

// OutputNames lists the model's output names, for messages.
func (m *Metadata) OutputNames() string { return tensorNames(m.Outputs) }

func tensorNames(specs []TensorSpec) string {
	names := make([]string, len(specs))
	for i, t := range specs {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}

// decodeValue reads one JSON value and appends it to col.
func decodeValue(dec *json.Decoder, col *Column, where string) error {
	tok, err := dec.Token()
	if err != nil {
		return valueSyntaxError(dec, err, where)
	}
	if err := appendToken(col, tok); err != nil {
		return Errorf(EINVALID, "%s: %v", where, err)
	}
	return nil
}

// appendToken appends one JSON scalar to col; the error says what is wrong
// with it, the caller says where.
func appendToken(col *Column, tok json.Token) error {
	switch v := tok.(type) {
	case json.Number:
		return appendNumber(col, v)
	case string:
		if col.Type != String {
			return fmt.Errorf("expected %s, got string %s", describe(col.Type), Quote(v))
		}
		col.String = append(col.String, v)
		return nil
	case bool:
		if col.Type != Bool {
			return fmt.Errorf("expected %s, got %t", describe(col.Type), v)
		}
		col.Bool = append(col.Bool, v)
		return nil
	case nil:
		if col.appendMissing() {
			return nil
		}
		return errors.New("must not be null")
	case json.Delim:
		kind := "an array"
		if v == '{' {
			kind = "an object"
		}
		return fmt.Errorf("expected %s, got %s", describe(col.Type), kind)
	}
	return errors.New("unexpected value")
}

// appendNumber parses a JSON number as col's type and appends it, refusing
// values the type cannot hold and values outside col's range.
func appendNumber(col *Column, n json.Number) error {
	s := string(n)
	var value float64 // as the model will see it, for the range check
	switch col.Type {
	case Float32:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return fmt.Errorf("%s is out of range for float32", s)
		}
		col.Float32 = append(col.Float32, float32(f))
		value = f
	case Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s is out of range for float64", s)
		}
		col.Float64 = append(col.Float64, f)
		value = f
	case Int64:
		i, err := parseInteger(s, 64)
		if err != nil {
			return err
		}
		col.Int64 = append(col.Int64, i)
		value = float64(i)
	case Int32:
		i, err := parseInteger(s, 32)
		if err != nil {
			return err
		}
		col.Int32 = append(col.Int32, int32(i))
		value = float64(i)
	default:
		return fmt.Errorf("expected %s, got number %s", describe(col.Type), s)
	}
	return col.checkRange(value, s)
}

// parseInteger accepts integers, including integral numbers written as
// floats (74.0, 7.4e1): JSON does not tell them apart.
func parseInteger(s string, bits int) (int64, error) {
	i, err := strconv.ParseInt(s, 10, bits)
	if err == nil {
		return i, nil
	}
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of range for int%d", s, bits)
	}
	f, ferr := strconv.ParseFloat(s, 64)
	if ferr != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("expected an integer, got %s", s)
	}
	limit := math.Ldexp(1, bits-1)
	if f < -limit || f >= limit {
		return 0, fmt.Errorf("%s is out of range for int%d", s, bits)
	}
	return int64(f), nil
}

func describe(t DataType) string {
	switch t {
	case Float32, Float64:
		return "a number"
	case Int64, Int32:
		return "an integer"
	case String:
		return "a string"
	case Bool:
		return "true or false"
	}
	return string(t)
}

// Quote shows a client's string in an error message, shortened.
func Quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}

// expectDelim reads the next token and checks it opens an array or object.
func expectDelim(dec *json.Decoder, want json.Delim, where, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(dec, err)
	}
	if d, ok := tok.(json.Delim); ok && d == want {
		return nil
	}
	return Errorf(EINVALID, "%s: expected %s, got %s", where, what, describeToken(tok))
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "string " + Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// valueSyntaxError is syntaxError for a field's value: it names the field,
// and says what to send instead of NaN or Infinity, which clients often
// write but JSON does not have.
func valueSyntaxError(dec *json.Decoder, err error, where string) error {
	var syn *json.SyntaxError
	nonFinite := errors.As(err, &syn) &&
		(strings.Contains(syn.Error(), "invalid character 'N'") || strings.Contains(syn.Error(), "invalid character 'I'"))
	err = syntaxError(dec, err)
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	if nonFinite {
		return Errorf(e.Code, "%s: %s (NaN and Infinity are not JSON numbers: send a finite number)", where, e.Message)
	}
	return Errorf(e.Code, "%s: %s", where, e.Message)
}

// syntaxError turns a decoder error into a client error with the offset.
// Errors reading the body (such as the size limit) pass through unchanged.
func syntaxError(dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return Errorf(EINVALID, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(EINVALID, "malformed JSON: unexpected end of body at byte %d", dec.InputOffset())
	}
	return err
}
