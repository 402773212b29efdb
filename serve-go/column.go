package skl2go

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// The rules every wire protocol decodes values with, so that a value means
// the same, and is refused with the same words, whatever the protocol.
// Errors say what is wrong with the value; the caller says where it was.

// AppendJSON appends one JSON scalar, as a json.Decoder that uses UseNumber
// returns it, to c: a number of c's type (AppendNumber), a string for a
// string column, true or false for a bool column.
func (c *Column) AppendJSON(tok json.Token) error {
	switch v := tok.(type) {
	case json.Number:
		return c.AppendNumber(string(v))
	case string:
		if c.Type != String {
			return fmt.Errorf("expected %s, got string %s", describe(c.Type), Quote(v))
		}
		c.String = append(c.String, v)
		return nil
	case bool:
		if c.Type != Bool {
			return fmt.Errorf("expected %s, got %t", describe(c.Type), v)
		}
		c.Bool = append(c.Bool, v)
		return nil
	case nil:
		if c.AppendMissing() {
			return nil
		}
		return errors.New("must not be null")
	case json.Delim:
		kind := "an array"
		if v == '{' {
			kind = "an object"
		}
		return fmt.Errorf("expected %s, got %s", describe(c.Type), kind)
	}
	return errors.New("unexpected value")
}

// AppendNumber parses s, a JSON number, as c's type and appends it,
// refusing values the type cannot hold and values outside c's range.
// Integer columns take integral numbers written as floats (74.0, 7.4e1):
// JSON does not tell them apart.
func (c *Column) AppendNumber(s string) error {
	var value float64 // as the model will see it, for the range check
	switch c.Type {
	case Float32:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return fmt.Errorf("%s is out of range for float32", s)
		}
		c.Float32 = append(c.Float32, float32(f))
		value = f
	case Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%s is out of range for float64", s)
		}
		c.Float64 = append(c.Float64, f)
		value = f
	case Int64:
		i, err := parseInteger(s, 64)
		if err != nil {
			return err
		}
		c.Int64 = append(c.Int64, i)
		value = float64(i)
	case Int32:
		i, err := parseInteger(s, 32)
		if err != nil {
			return err
		}
		c.Int32 = append(c.Int32, int32(i))
		value = float64(i)
	default:
		return fmt.Errorf("expected %s, got number %s", describe(c.Type), s)
	}
	return c.checkRange(value, s)
}

// CheckRange refuses v, a value decoded from binary data, when it lies
// outside c's range.
func (c *Column) CheckRange(v float64) error { return c.checkRange(v, "") }

// checkRange refuses v (written as text in messages, or formatted with
// %g's shortest form when text is empty) when it lies outside the column's
// range.
func (c *Column) checkRange(v float64, text string) error {
	if len(c.Range) == 2 && !(v >= c.Range[0] && v <= c.Range[1]) {
		if text == "" {
			text = strconv.FormatFloat(v, 'g', -1, 64)
		}
		return fmt.Errorf("%s is out of range: the model accepts %g to %g", text, c.Range[0], c.Range[1])
	}
	return nil
}

// parseInteger accepts integers, including integral numbers written as
// floats.
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

// describe names what a value of type t looks like in JSON, for messages.
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
