package oip

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// decodeTensorJSON appends the elements of data, a JSON array of scalars
// nested to any depth (read in row-major order), to col. It reads at most
// limit elements and returns how many it appended. Elements are checked as
// the v1 protocol checks fields (skl2go.Column.AppendJSON); errors are
// EINVALID and start with where.
func decodeTensorJSON(data []byte, col *skl2go.Column, limit int, where string) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := jsonwire.ExpectDelim(dec, '[', where, "an array"); err != nil {
		return 0, err
	}
	n := 0
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return n, jsonwire.SyntaxError(dec, err)
		}
		if d, ok := tok.(json.Delim); ok && d != '{' {
			if d == '[' {
				depth++
			} else {
				depth--
			}
			continue
		}
		if n == limit {
			return n, skl2go.Errorf(skl2go.EINVALID, "%s: more than %d elements", where, limit)
		}
		if err := col.AppendJSON(tok); err != nil {
			return n, skl2go.Errorf(skl2go.EINVALID, "%s: element %d: %v", where, n, err)
		}
		n++
	}
	return n, nil
}

// elementSize is the size in bytes of one element of t in the binary tensor
// encoding (little-endian, bool as one byte 0 or 1), or 0 for strings, whose
// elements each carry a 4-byte little-endian length before their bytes.
func elementSize(t skl2go.DataType) int {
	switch t {
	case skl2go.Float64, skl2go.Int64:
		return 8
	case skl2go.Float32, skl2go.Int32:
		return 4
	case skl2go.Bool:
		return 1
	}
	return 0
}

// decodeTensorBinary appends count elements, encoded as elementSize says,
// from raw to col; raw must hold exactly those elements. Floats must be
// finite (JSON cannot carry NaN or Infinity either; a nullable column takes
// NaN as missing, as JSON's null), strings valid UTF-8
// without NUL bytes. The error says what is wrong; the caller says where.
func decodeTensorBinary(raw []byte, col *skl2go.Column, count int) error {
	size := elementSize(col.Type)
	if size > 0 && len(raw) != count*size {
		return fmt.Errorf("%d bytes of binary data, but %d elements of %d bytes need %d", len(raw), count, size, count*size)
	}
	le := binary.LittleEndian
	switch col.Type {
	case skl2go.Float32:
		for i := 0; i < count; i++ {
			f := math.Float32frombits(le.Uint32(raw[4*i:]))
			if err := checkBinary(col, float64(f), i); err != nil {
				return err
			}
			col.Float32 = append(col.Float32, f)
		}
	case skl2go.Float64:
		for i := 0; i < count; i++ {
			f := math.Float64frombits(le.Uint64(raw[8*i:]))
			if err := checkBinary(col, f, i); err != nil {
				return err
			}
			col.Float64 = append(col.Float64, f)
		}
	case skl2go.Int64:
		for i := 0; i < count; i++ {
			v := int64(le.Uint64(raw[8*i:]))
			if err := checkBinary(col, float64(v), i); err != nil {
				return err
			}
			col.Int64 = append(col.Int64, v)
		}
	case skl2go.Int32:
		for i := 0; i < count; i++ {
			v := int32(le.Uint32(raw[4*i:]))
			if err := checkBinary(col, float64(v), i); err != nil {
				return err
			}
			col.Int32 = append(col.Int32, v)
		}
	case skl2go.Bool:
		for i, b := range raw {
			if b > 1 {
				return fmt.Errorf("element %d: byte %d is not a boolean (0 or 1)", i, b)
			}
			col.Bool = append(col.Bool, b == 1)
		}
	case skl2go.String:
		return decodeStrings(raw, col, count)
	default:
		return fmt.Errorf("unsupported type %s", col.Type)
	}
	return nil
}

func decodeStrings(raw []byte, col *skl2go.Column, count int) error {
	off := 0
	for i := 0; i < count; i++ {
		if len(raw)-off < 4 {
			return fmt.Errorf("element %d: binary data ends at byte %d, before the element's 4-byte length", i, len(raw))
		}
		n := int(binary.LittleEndian.Uint32(raw[off:]))
		off += 4
		if len(raw)-off < n {
			return fmt.Errorf("element %d: length %d runs past the end of the binary data (%d bytes left)", i, n, len(raw)-off)
		}
		s := string(raw[off : off+n])
		off += n
		if !utf8.ValidString(s) {
			return fmt.Errorf("element %d: not valid UTF-8", i)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("element %d: contains a NUL byte", i)
		}
		col.String = append(col.String, s)
	}
	if off != len(raw) {
		return fmt.Errorf("%d bytes of binary data after the %d elements", len(raw)-off, count)
	}
	return nil
}

// checkBinary refuses element i, v, when it is not finite or lies outside
// the column's range. NaN is a missing value where the column is nullable.
func checkBinary(col *skl2go.Column, v float64, i int) error {
	if math.IsNaN(v) && col.Nullable {
		return nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("element %d is %v: only finite numbers are accepted", i, v)
	}
	if err := col.CheckRange(v); err != nil {
		return fmt.Errorf("element %d: %w", i, err)
	}
	return nil
}
