// Package kafka is the streaming front of skl2go: a consumer group reads
// ride events from a topic, scores them in batches with the model store
// (package events: the same models, runtime, hot reload and dynamic
// batcher as the HTTP server), and produces one prediction record per event
// to an output topic, or the event itself to a dead-letter topic when it
// cannot be scored. It uses franz-go (pure Go).
//
// Delivery is at least once. Each poll is one batch: every record it
// produces (predictions and dead letters) must be acknowledged by the
// broker (acks from all in-sync replicas, idempotent producer) before its
// input offsets are marked for commit; marked offsets are committed every
// few seconds, when partitions are revoked, and at shutdown. A consumer
// that dies between producing and committing reprocesses those events on
// restart: their predictions appear twice, none is missing. Rebalances
// wait for the batch in progress (BlockRebalanceOnPoll).
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"skl2go"
	"skl2go/events"
)

// Config configures one model's consumer.
type Config struct {
	Brokers []string
	// Input is the topic of ride events; Group the consumer group (default
	// "skl2go-<model>": each model consumes the whole stream, and the
	// consumers of one model share its partitions).
	Input string
	Group string
	// Output and DeadLetter are the topics predictions and unscorable
	// events go to; "{model}" in either is replaced by the model's name (a
	// topic per model). Defaults: "predictions" and "<input>.dlq".
	Output     string
	DeadLetter string
	// MaxPollRecords bounds the events scored in one batch (default 1000).
	MaxPollRecords int
	// Partitions is the partition count of topics the consumer creates
	// when they do not exist (default 4).
	Partitions int32
	// ClientID names the client to the broker (default "skl2go-stream").
	ClientID string
}

func (c *Config) defaults(model string) {
	if c.Group == "" {
		c.Group = "skl2go-" + model
	}
	if c.Output == "" {
		c.Output = "predictions"
	}
	if c.DeadLetter == "" {
		c.DeadLetter = c.Input + ".dlq"
	}
	c.Group = strings.ReplaceAll(c.Group, "{model}", model)
	c.Output = strings.ReplaceAll(c.Output, "{model}", model)
	c.DeadLetter = strings.ReplaceAll(c.DeadLetter, "{model}", model)
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 1000
	}
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.ClientID == "" {
		c.ClientID = "skl2go-stream"
	}
}

// Dead-letter record headers: the record's value and key are the event's,
// byte for byte; these say why and where it came from.
const (
	HeaderError     = "skl2go-error"      // the message, as the HTTP API would give it
	HeaderErrorCode = "skl2go-error-code" // skl2go's error code (invalid, internal)
	HeaderModel     = "skl2go-model"      // the model that could not score it
	HeaderSource    = "skl2go-source"     // topic/partition/offset of the event
)

// Consumer scores one model's share of the input topic.
type Consumer struct {
	config  Config
	scorer  *events.Scorer
	client  *kgo.Client
	metrics *Metrics
	logger  *slog.Logger
}

// NewConsumer connects a consumer for scorer's model; Run consumes.
func NewConsumer(config Config, scorer *events.Scorer, metrics *Metrics, logger *slog.Logger) (*Consumer, error) {
	if len(config.Brokers) == 0 || config.Input == "" {
		return nil, errors.New("kafka: brokers and an input topic are required")
	}
	config.defaults(scorer.Model)
	if config.Output == config.Input || config.DeadLetter == config.Input {
		return nil, fmt.Errorf("kafka: the output (%s) and dead-letter (%s) topics must differ from the input topic", config.Output, config.DeadLetter)
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(config.Brokers...),
		kgo.ClientID(config.ClientID),
		kgo.ConsumerGroup(config.Group),
		kgo.ConsumeTopics(config.Input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // a new group reads the stream from its start
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(2*time.Second),
		kgo.BlockRebalanceOnPoll(),
		// A consumer that dies (kill -9) holds its partitions until the session times out: 10s, not 45s.
		kgo.SessionTimeout(10*time.Second),
		kgo.FetchMaxWait(100*time.Millisecond),
		// Every poll's records are produced, then waited for: lingering only delays the acks.
		kgo.ProducerLinger(0),
		// Uncompressed: any client reads it (snappy, franz-go's default, needs a codec kafka-python lacks).
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default, and what idempotence requires: stated, not assumed
		kgo.RecordDeliveryTimeout(2*time.Minute),
		kgo.WithLogger(kgoLogger{logger}),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return &Consumer{config: config, scorer: scorer, client: client, metrics: metrics, logger: logger.With("model", scorer.Model, "group", config.Group)}, nil
}

// Group is the consumer group, once defaults are applied.
func (c *Consumer) Group() string { return c.config.Group }

// Topics are the consumer's topics, once defaults are applied.
func (c *Consumer) Topics() (input, output, deadLetter string) {
	return c.config.Input, c.config.Output, c.config.DeadLetter
}

// EnsureTopics creates the input, output and dead-letter topics that do not
// exist yet (the broker does not create topics on use).
func (c *Consumer) EnsureTopics(ctx context.Context) error {
	admin := kadm.NewClient(c.client)
	topics := []string{c.config.Input, c.config.Output, c.config.DeadLetter}
	created, err := admin.CreateTopics(ctx, c.config.Partitions, 1, nil, uniq(topics)...)
	if err != nil {
		return fmt.Errorf("kafka: creating topics %v on %v: %w", topics, c.config.Brokers, err)
	}
	for _, t := range created.Sorted() {
		switch {
		case t.Err == nil:
			c.logger.Info("topic created", "topic", t.Topic, "partitions", c.config.Partitions)
		case errors.Is(t.Err, kerr.TopicAlreadyExists):
		default:
			return fmt.Errorf("kafka: creating topic %s: %w", t.Topic, t.Err)
		}
	}
	return nil
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Run consumes until ctx ends, then finishes the batch in progress (its
// records produced and acknowledged), commits what was marked and leaves
// the group. It returns an error when records cannot be produced (the
// batch is then not committed: it is consumed again after a restart).
func (c *Consumer) Run(ctx context.Context) error {
	c.logger.Info("consuming", "input", c.config.Input, "output", c.config.Output, "dead_letter", c.config.DeadLetter,
		"max_poll_records", c.config.MaxPollRecords)
	err := c.consume(ctx)
	// Drain: commit every batch acknowledged, then leave the group (a rebalance hands
	// the partitions to the others at once instead of after the session timeout).
	commitCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := c.client.CommitMarkedOffsets(commitCtx); cerr != nil {
		c.logger.Error("committing offsets at shutdown; those events will be consumed again", "err", cerr)
	}
	c.client.CloseAllowingRebalance()
	c.logger.Info("stopped")
	return err
}

func (c *Consumer) consume(ctx context.Context) error {
	for {
		fetches := c.client.PollRecords(ctx, c.config.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			// Records polled as ctx ended are neither scored nor committed.
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			c.logger.Warn("fetch error (retrying)", "topic", topic, "partition", partition, "err", err)
		})
		records := fetches.Records()
		if len(records) > 0 {
			c.observeLag(fetches)
			// The batch runs to its end even if ctx ends meanwhile: that is the drain.
			if err := c.process(context.WithoutCancel(ctx), records); err != nil {
				return err
			}
			c.client.MarkCommitRecords(records...)
		}
		c.client.AllowRebalance()
	}
}

// process scores records and produces their results, returning once the
// broker has acknowledged every one.
func (c *Consumer) process(ctx context.Context, records []*kgo.Record) error {
	model := c.scorer.Model
	c.metrics.consumed.WithLabelValues(model).Add(float64(len(records)))
	c.metrics.batchRows.WithLabelValues(model).Observe(float64(len(records)))
	values := make([][]byte, len(records))
	for i, r := range records {
		values[i] = r.Value
	}
	// The scorer retries while the model is unavailable; bound it so that a
	// model that never comes back stops the consumer instead of hanging it.
	scoreCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	results, err := c.scorer.Score(scoreCtx, values)
	cancel()
	if err != nil {
		return err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(len(records))
	for i, r := range records {
		res := &results[i]
		out := &kgo.Record{Key: r.Key}
		eventTime := r.Timestamp
		if !res.Event.Time.IsZero() {
			eventTime = res.Event.Time
		}
		dead := res.Err != nil
		if dead {
			out.Topic, out.Value = c.config.DeadLetter, r.Value
			out.Headers = []kgo.RecordHeader{
				{Key: HeaderError, Value: []byte(skl2go.ErrorMessage(res.Err))},
				{Key: HeaderErrorCode, Value: []byte(skl2go.ErrorCode(res.Err))},
				{Key: HeaderModel, Value: []byte(model)},
				{Key: HeaderSource, Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))},
			}
		} else {
			out.Topic, out.Value = c.config.Output, res.Record
		}
		code := skl2go.ErrorCode(res.Err)
		c.client.Produce(ctx, out, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			if dead {
				c.metrics.deadLettered.WithLabelValues(model, code).Inc()
			} else {
				c.metrics.produced.WithLabelValues(model, strconv.Itoa(res.Version)).Inc()
				c.metrics.endToEnd.WithLabelValues(model).Observe(time.Since(eventTime).Seconds())
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("kafka: producing the results of %d events (their offsets are not committed): %w", len(records), firstErr)
	}
	return nil
}

// observeLag sets the lag of each partition fetched: the records after the
// last one polled.
func (c *Consumer) observeLag(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			lag := p.HighWatermark - (p.Records[n-1].Offset + 1)
			c.metrics.lag.WithLabelValues(c.scorer.Model, p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(lag, 0)))
		}
	})
}

// kgoLogger sends franz-go's log lines (warnings and errors) to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka client: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka client: "+msg, keyvals...)
	default:
		k.l.Debug("kafka client: "+msg, keyvals...)
	}
}
