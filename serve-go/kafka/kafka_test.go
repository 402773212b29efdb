package kafka_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"skl2go"
	"skl2go/batching"
	"skl2go/events"
	"skl2go/internal/fixture"
	"skl2go/kafka"
	"skl2go/onnx"
	"skl2go/repository"
)

var (
	runtime *onnx.Runtime
	models  string
)

func TestMain(m *testing.M) { fixture.Main(m, &runtime, &models) }

// store serves the fixture regressor through the limiter and the batcher,
// as skl2go-stream loads it.
func store(t *testing.T) *repository.Store {
	t.Helper()
	load := batching.Loader(func(e repository.Entry) (skl2go.Model, error) { return runtime.Load(e.Dir, e.Metadata) },
		skl2go.NewLimiter(2, 0, 0), batching.Options{MaxRows: 64}, nil)
	s, err := repository.Open(models, load, repository.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// event makes a ride event of an example instance.
func event(id string, instance json.RawMessage) []byte {
	return append([]byte(`{"ride_id":"`+id+`",`), bytes.TrimPrefix(bytes.TrimSpace(instance), []byte("{"))...)
}

type prediction struct {
	RideID     string  `json:"ride_id"`
	Prediction float64 `json:"prediction"`
	Model      string  `json:"model"`
	Version    int     `json:"version"`
	Variant    *string `json:"variant"`
}

// An in-process fake broker (kfake): every valid event gets the model's
// prediction on the output topic, every malformed one lands on the
// dead-letter topic byte for byte with its error, and after shutdown the
// group's committed offsets cover the whole input.
func TestConsumerScoresEventsAndDeadLettersTheRest(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "rides"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	s := store(t)
	model, release, err := s.Acquire(fixture.Model, 0)
	if err != nil {
		t.Fatal(err)
	}
	instances, want := fixture.Examples(model.Metadata())
	release()

	// 300 events: the examples over and over, every 10th malformed in one of several ways.
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("rides"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	broken := []func([]byte) []byte{
		func(b []byte) []byte { return b[:len(b)/2] },                                               // cut off
		func(b []byte) []byte { return bytes.Replace(b, []byte(`"ride_id"`), []byte(`"ride"`), 1) }, // no id
		func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"trip_distance":`), []byte(`"trip_distance":-5,"x":`), 1)
		}, // out of range first
	}
	valid := map[string]float64{}
	malformed := map[string][]byte{}
	var records []*kgo.Record
	for i := range 300 {
		id := fmt.Sprintf("r-%d", i)
		value := event(id, instances[i%len(instances)])
		if i%10 == 9 {
			value = broken[(i/10)%len(broken)](value)
			malformed[id] = value
		} else {
			valid[id] = want[i%len(instances)]
		}
		records = append(records, &kgo.Record{Key: []byte(id), Value: value})
	}
	if err := producer.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	metrics := kafka.NewMetrics(reg)
	scorer := &events.Scorer{Store: s, Model: fixture.Model, Variant: "blue"}
	consumer, err := kafka.NewConsumer(kafka.Config{Brokers: brokers, Input: "rides", Group: "g-{model}", Output: "predictions-{model}", MaxPollRecords: 50},
		scorer, metrics, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if consumer.Group() != "g-"+fixture.Model {
		t.Errorf("group = %q, want {model} replaced", consumer.Group())
	}
	if err := consumer.EnsureTopics(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()

	got := readTopic(t, brokers, "predictions-"+fixture.Model, len(valid))
	dead := readTopic(t, brokers, "rides.dlq", len(malformed))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	for _, r := range got {
		var p prediction
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatalf("prediction record %s: %v", r.Value, err)
		}
		w, ok := valid[p.RideID]
		if !ok || string(r.Key) != p.RideID {
			t.Fatalf("prediction for an unexpected ride %q (key %q)", p.RideID, r.Key)
		}
		if !skl2go.WithinTolerance(p.Prediction, w) || p.Model != fixture.Model || p.Version != 1 || p.Variant == nil || *p.Variant != "blue" {
			t.Fatalf("record %s, want prediction %v of %s version 1, variant blue", r.Value, w, fixture.Model)
		}
		delete(valid, p.RideID)
	}
	if len(valid) != 0 {
		t.Fatalf("%d valid events have no prediction", len(valid))
	}
	for _, r := range dead {
		value, ok := malformed[string(r.Key)]
		if !ok || !bytes.Equal(r.Value, value) {
			t.Fatalf("dead letter %q = %q, not an event sent as malformed", r.Key, r.Value)
		}
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		if headers[kafka.HeaderErrorCode] != skl2go.EINVALID || headers[kafka.HeaderModel] != fixture.Model ||
			!strings.HasPrefix(headers[kafka.HeaderSource], "rides/") {
			t.Fatalf("dead letter %q headers %v", r.Key, headers)
		}
		switch msg := headers[kafka.HeaderError]; {
		case bytes.Contains(value, []byte(`"ride"`)) && !strings.HasPrefix(msg, "event.ride: unknown field"):
			t.Errorf("dead letter %q: error %q", r.Key, msg)
		case bytes.Contains(value, []byte(`-5`)) && msg != "event.trip_distance: -5 is out of range: the model accepts 0 to 1000":
			t.Errorf("dead letter %q: error %q", r.Key, msg)
		}
		delete(malformed, string(r.Key))
	}
	if len(malformed) != 0 {
		t.Fatalf("%d malformed events are not in the dead-letter topic", len(malformed))
	}

	// Every input offset was committed at shutdown: a restart would start at the end.
	admin := kadm.NewClient(producer)
	offsets, err := admin.FetchOffsets(context.Background(), consumer.Group())
	if err != nil {
		t.Fatal(err)
	}
	committed := int64(0)
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 300 {
		t.Errorf("committed offsets sum to %d, want 300", committed)
	}
	if n := counterSum(t, reg, "skl2go_stream_consumed_total"); n != 300 {
		t.Errorf("consumed = %v, want 300", n)
	}
}

// counterSum returns the sum of a counter's series.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// readTopic reads n records of a topic from its start (failing after 30s).
func readTopic(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	client, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fetches := client.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d records after 30s", topic, len(out), n)
		}
		out = append(out, fetches.Records()...)
	}
	return out
}
