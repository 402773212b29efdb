package tfserving

import (
	"unsafe"

	"skl2go"
)

// scanRequest is the fast path for a predict body held in memory,
// {"instances": [{field: value, …}, …]}: one pass over the bytes, no
// tokens, no reflection, columns sized once. It returns ok=false for
// anything it does not accept as is: malformed JSON, any value or field the
// model refuses, more than maxRows rows, and also the rare valid inputs it
// leaves to the full decoder (escapes in strings or keys, non-ASCII
// strings). The caller then decodes the body with the token decoder, which
// gives the verdict and the error message: the two paths cannot disagree
// on a message, and the fast one needs only to be right about what it
// accepts, which the tests compare with the token decoder.
func scanRequest(body []byte, meta *skl2go.Metadata, maxRows int) (batch *skl2go.Batch, ok bool) {
	s := scanner{data: body}
	if !s.expect('{') || !s.expectKey("instances") || !s.expect(':') {
		return nil, false
	}
	batch, ok = scanInstances(&s, meta, maxRows)
	if !ok || !s.expect('}') {
		return nil, false
	}
	s.skipSpace()
	return batch, s.pos == len(s.data)
}

// scanInstances reads the instances array at the scanner's position.
func scanInstances(s *scanner, meta *skl2go.Metadata, maxRows int) (*skl2go.Batch, bool) {
	if !s.expect('[') {
		return nil, false
	}
	if len(meta.Inputs) > 64 {
		return nil, false // seen is a 64-bit set
	}
	batch := &skl2go.Batch{Columns: make([]skl2go.Column, len(meta.Inputs))}
	for i, in := range meta.Inputs {
		batch.Columns[i] = in.NewColumn()
	}
	all := uint64(1)<<len(meta.Inputs) - 1
	start := s.pos
	for {
		if batch.Rows == maxRows || !s.expect('{') {
			return nil, false
		}
		var seen uint64
		for {
			key, ok := s.plainString()
			if !ok || !s.expect(':') {
				return nil, false
			}
			i, known := meta.InputIndex(unsafeString(key)) // no allocation for the lookup
			if !known || seen&(1<<i) != 0 || !s.value(&batch.Columns[i]) {
				return nil, false
			}
			seen |= 1 << i
			if s.expect(',') {
				continue
			}
			if !s.expect('}') {
				return nil, false
			}
			break
		}
		if seen != all {
			return nil, false
		}
		batch.Rows++
		if s.expect(',') {
			if batch.Rows == 1 { // more rows: size the columns for them from the first row's length
				reserve(batch, min(maxRows, (len(s.data)-start)/max(1, s.pos-start)+1))
			}
			continue
		}
		if !s.expect(']') {
			return nil, false
		}
		return batch, true
	}
}

func reserve(batch *skl2go.Batch, rows int) {
	for i := range batch.Columns {
		c := &batch.Columns[i]
		c.Values.Grow(c.Type, rows-batch.Rows)
	}
}

// scanner reads JSON bytes by hand.
type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// expect consumes c, after optional whitespace, if it is next.
func (s *scanner) expect(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// expectKey consumes the string key, written without escapes.
func (s *scanner) expectKey(key string) bool {
	got, ok := s.plainString()
	return ok && string(got) == key
}

// plainString reads a string of printable ASCII without escapes and returns
// its contents (a slice of the input).
func (s *scanner) plainString() ([]byte, bool) {
	if !s.expect('"') {
		return nil, false
	}
	start := s.pos
	for ; s.pos < len(s.data); s.pos++ {
		switch c := s.data[s.pos]; {
		case c == '"':
			s.pos++
			return s.data[start : s.pos-1], true
		case c < 0x20 || c == '\\' || c >= 0x80:
			return nil, false
		}
	}
	return nil, false
}

// number reads a JSON number, exactly as the grammar allows:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() ([]byte, bool) {
	d, start := s.data, s.pos
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i++; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i == len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for ; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i == len(d) || d[i] < '0' || d[i] > '9' {
			return nil, false
		}
		for ; i < len(d) && d[i] >= '0' && d[i] <= '9'; i++ {
		}
	}
	s.pos = i
	return d[start:i], true
}

// literal consumes word (true, false) if it is next.
func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// value reads one field's value into col, with DecodeInstances' rules.
func (s *scanner) value(col *skl2go.Column) bool {
	s.skipSpace()
	if s.pos == len(s.data) {
		return false
	}
	if col.Nullable && s.literal("null") {
		return col.AppendMissing()
	}
	switch col.Type {
	case skl2go.String:
		str, ok := s.plainString()
		if ok {
			col.String = append(col.String, string(str))
		}
		return ok
	case skl2go.Bool:
		switch {
		case s.literal("true"):
			col.Bool = append(col.Bool, true)
		case s.literal("false"):
			col.Bool = append(col.Bool, false)
		default:
			return false
		}
		return true
	}
	num, ok := s.number()
	if !ok {
		return false
	}
	// The same conversions as the token decoder: a fast path cannot round differently.
	return col.AppendNumber(unsafeString(num)) == nil
}

// unsafeString views b as a string without copying; the string must not
// outlive b or be kept (AppendNumber keeps it only in an error, which the
// fast path drops).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
