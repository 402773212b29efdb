package tfserving

import (
	"strconv"

	"skl2go"
	"skl2go/internal/jsonwire"
)

// AppendResponse appends the answer to req, in the form it came in: rows
// (AppendPredictions) or columns (AppendOutputs).
func AppendResponse(buf []byte, req Request, outputs []skl2go.Output, name string, version int) ([]byte, error) {
	if req.Columnar {
		return AppendOutputs(buf, outputs, req.Batch.Rows, name, version)
	}
	return AppendPredictions(buf, outputs, req.Batch.Rows, name, version)
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
		if len(outputs) == 1 {
			var err error
			if buf, err = appendRow(buf, &outputs[0], row); err != nil {
				return nil, err
			}
			continue
		}
		buf = append(buf, '{')
		for i := range outputs {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = jsonwire.AppendString(buf, outputs[i].Name)
			buf = append(buf, ':')
			var err error
			if buf, err = appendRow(buf, &outputs[i], row); err != nil {
				return nil, err
			}
		}
		buf = append(buf, '}')
	}
	buf = append(buf, `],"model":`...)
	buf = jsonwire.AppendString(buf, name)
	buf = append(buf, `,"version":`...)
	buf = strconv.AppendInt(buf, int64(version), 10)
	return append(buf, '}'), nil
}

// AppendOutputs appends the columnar response body to buf, as TF Serving
// answers {"inputs": …}: {"outputs": …, "model": name, "version": v}. One
// output gives its values, one per row (an array when it has several
// columns); several outputs give an object of them keyed by output name
// (a classifier's {"label": [1, 0], "probabilities": [[p0, p1], [p0, p1]]}).
func AppendOutputs(buf []byte, outputs []skl2go.Output, rows int, name string, version int) ([]byte, error) {
	buf = append(buf, `{"outputs":`...)
	if len(outputs) > 1 {
		buf = append(buf, '{')
	}
	for i := range outputs {
		if i > 0 {
			buf = append(buf, ',')
		}
		if len(outputs) > 1 {
			buf = jsonwire.AppendString(buf, outputs[i].Name)
			buf = append(buf, ':')
		}
		buf = append(buf, '[')
		for row := 0; row < rows; row++ {
			if row > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendRow(buf, &outputs[i], row); err != nil {
				return nil, err
			}
		}
		buf = append(buf, ']')
	}
	if len(outputs) > 1 {
		buf = append(buf, '}')
	}
	buf = append(buf, `,"model":`...)
	buf = jsonwire.AppendString(buf, name)
	buf = append(buf, `,"version":`...)
	buf = strconv.AppendInt(buf, int64(version), 10)
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
		if buf, err = jsonwire.AppendValue(buf, out, i); err != nil {
			return nil, err
		}
	}
	if width != 1 {
		buf = append(buf, ']')
	}
	return buf, nil
}
