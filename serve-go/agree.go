package skl2go

import (
	"encoding/json"
	"fmt"
	"math"
)

// ProbabilityTolerance is how far a class probability may be from sklearn's
// predict_proba: the bound export and the parity report check.
const ProbabilityTolerance = 1e-5

// ClassPrediction is what sklearn predicted for one row of a classifier: the
// label (predict) and the class probabilities (predict_proba), as model.json
// examples record them and the predict API answers them.
type ClassPrediction struct {
	Label         int64     `json:"label"`
	Probabilities []float64 `json:"probabilities"`
}

// AgreesWithSklearn checks one row of a model's outputs against the
// prediction sklearn made for it (a model.json example): for regression a
// number, within WithinTolerance; for classification a ClassPrediction, the
// label identical and every probability within ProbabilityTolerance. It
// returns nil when they agree, else an error saying how they differ.
func (m *Metadata) AgreesWithSklearn(outputs []Output, row int, want json.RawMessage) error {
	if m.Task == Classification {
		return agreesAsClassifier(outputs, row, want, len(m.Classes))
	}
	var w float64
	if err := json.Unmarshal(want, &w); err != nil {
		return fmt.Errorf("the recorded prediction %s is not a number", want)
	}
	got := outputs[0].Float64s()
	if row >= len(got) {
		return fmt.Errorf("output %s has no row %d", outputs[0].Name, row)
	}
	if !WithinTolerance(got[row], w) {
		return fmt.Errorf("graph %g, sklearn %g", got[row], w)
	}
	return nil
}

func agreesAsClassifier(outputs []Output, row int, want json.RawMessage, classes int) error {
	var w ClassPrediction
	if err := json.Unmarshal(want, &w); err != nil || len(w.Probabilities) != classes {
		return fmt.Errorf(`the recorded prediction %s is not {"label": …, "probabilities": [%d numbers]}`, want, classes)
	}
	labels, proba := outputs[0], outputs[1]
	if len(labels.Int64) <= row || len(proba.Float32) < (row+1)*classes {
		return fmt.Errorf("the outputs have no row %d", row)
	}
	if got := labels.Int64[row]; got != w.Label {
		return fmt.Errorf("%s: graph %d, sklearn %d", LabelOutput, got, w.Label)
	}
	for c, p := range proba.Float32[row*classes : (row+1)*classes] {
		if !(math.Abs(float64(p)-w.Probabilities[c]) <= ProbabilityTolerance) {
			return fmt.Errorf("%s[%d]: graph %g, sklearn %g (more than %g apart)",
				ProbabilitiesOutput, c, p, w.Probabilities[c], ProbabilityTolerance)
		}
	}
	return nil
}
