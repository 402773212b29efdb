// Package jsonwire holds the JSON reading and writing both wire protocols
// (tfserving, oip) share: token errors a client can act on, and appends of
// names and output values that do not go through reflection.
package jsonwire

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"skl2go"
)

// ExpectDelim reads the next token and checks it opens an array or object;
// where and what name it in the error.
func ExpectDelim(dec *json.Decoder, want json.Delim, where, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return SyntaxError(dec, err)
	}
	if d, ok := tok.(json.Delim); ok && d == want {
		return nil
	}
	return skl2go.Errorf(skl2go.EINVALID, "%s: expected %s, got %s", where, what, DescribeToken(tok))
}

// DescribeToken names a token for messages: "an array", "number 5", ….
func DescribeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "string " + skl2go.Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}

// SyntaxError turns a decoder error into a client error with the offset.
// Errors reading the body (such as the size limit) pass through unchanged.
func SyntaxError(dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return skl2go.Errorf(skl2go.EINVALID, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return skl2go.Errorf(skl2go.EINVALID, "malformed JSON: unexpected end of body at byte %d", dec.InputOffset())
	}
	return err
}

// AppendString appends s as a JSON string.
func AppendString(buf []byte, s string) []byte {
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

// AppendValue appends element i of out as JSON.
func AppendValue(buf []byte, out *skl2go.Output, i int) ([]byte, error) {
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
		return AppendString(buf, out.String[i]), nil
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
