package kinesis_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"skl2go"
	"skl2go/events"
	"skl2go/internal/fixture"
	"skl2go/kinesis"
	"skl2go/onnx"
	"skl2go/repository"
	"skl2go/tfserving"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

// A recorded Kinesis event (testdata/event.json: four base64 ride events,
// the last out of range) gets the predictions the HTTP API gives for the
// same instances, in order, and the bad record back with its error.
func TestHandleRecordedEvent(t *testing.T) {
	store, err := repository.Open(models, func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) }, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	payload, err := os.ReadFile("testdata/event.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := kinesis.Handle(context.Background(), &events.Scorer{Store: store, Model: fixture.Model}, payload)
	if err != nil {
		t.Fatal(err)
	}

	// The same three instances through the HTTP API's decoder and the model.
	model, release, _ := store.Acquire(fixture.Model, 0)
	defer release()
	body := `{"instances": [
		{"PULocationID": 130, "DOLocationID": 205, "trip_distance": 3.66, "pickup_hour": 10, "pickup_weekday": 3},
		{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1},
		{"PULocationID": 43, "DOLocationID": 151, "trip_distance": 1.1, "pickup_hour": 23, "pickup_weekday": 6}]}`
	req, err := tfserving.DecodeRequest([]byte(body), model.Metadata(), 10)
	if err != nil {
		t.Fatal(err)
	}
	outputs, err := model.Predict(context.Background(), req.Batch)
	if err != nil {
		t.Fatal(err)
	}
	want := outputs[0].Float64s()

	ids := []string{`"156"`, `"157"`, `158`}
	if len(resp.Predictions) != 3 {
		t.Fatalf("%d predictions, want 3: %s", len(resp.Predictions), resp.Predictions)
	}
	for i, raw := range resp.Predictions {
		var p struct {
			RideID     json.RawMessage `json:"ride_id"`
			Prediction float64         `json:"prediction"`
			Model      string          `json:"model"`
			Version    int             `json:"version"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if string(p.RideID) != ids[i] || float32(p.Prediction) != float32(want[i]) || p.Model != fixture.Model || p.Version != 1 {
			t.Errorf("prediction %d = %s, want ride %s, %v", i, raw, ids[i], want[i])
		}
	}
	if len(resp.DeadLetters) != 1 {
		t.Fatalf("dead letters = %+v, want the out-of-range record", resp.DeadLetters)
	}
	dl := resp.DeadLetters[0]
	if dl.SequenceNumber != "49599067482332637312327974265378793" || dl.Code != skl2go.EINVALID ||
		dl.Error != "event.trip_distance: 5000 is out of range: the model accepts 0 to 1000" || len(dl.Data) == 0 {
		t.Errorf("dead letter = %+v", dl)
	}
}

func TestHandleRefusesWhatIsNotAKinesisEvent(t *testing.T) {
	_, err := kinesis.Handle(context.Background(), &events.Scorer{Model: fixture.Model}, []byte(`{"Records": [{"kinesis": {"data": "not base64!"}}]}`))
	if skl2go.ErrorCode(err) != skl2go.EINVALID {
		t.Fatalf("err = %v, want invalid", err)
	}
}
