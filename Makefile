# skl2go: train a sklearn pipeline, export it to ONNX, serve it from Go
# replicas behind nginx.
#
#   make demo     set everything up, train on sample data, serve, print a prediction
#   make test     everything tested (Python, Go, the real topology)
#
#   make train export [DATA="a.parquet b.parquet"] [MODEL=linear] [NAME=trip_duration]
#   make import PIPELINE=model.bin SAMPLE=records.jsonl NAME=name   a fitted pipeline you bring
#   make parity        every model family through the real server, checked against sklearn
#   make up [PORT=8080] [GRPC_PORT=8081] [REPLICAS=2]      make down      make predict
#   make rollout   restart the replicas one at a time, no request lost
#   make up        converges: on a running stack it changes only what differs
#   make chaos [QUICK=1]   faults under load through nginx; writes reports/chaos.{md,json}
#   make soak [MINUTES=30] [RATE=req/s]   half the measured capacity for MINUTES; reports/soak.{md,json}
#   make bench [QUICK=1]   Go vs the sklearn baseline under Locust and wrk (reports/)
#   make bench-shadow   a 10x slower mirror on and off in alternating rounds (reports/bench-shadow.json)
#   make score DATA=… OUT=… [NAME=…] [VERSION=n|ALIAS=champion] [ENGINE=local|spark]   batch scoring to parquet
#   make score-new DIR=incoming/ OUT_DIR=scored/   score each month's file not scored yet
#   make bench-batch   batch scoring of 3M yellow trips: local, Spark, sklearn (reports/)
#   make mlflow    MLflow tracking server + registry on 127.0.0.1:5000 (docs/registry.md)
#   make promote NAME=trip_duration VERSION=3 [ALIAS=champion]
#   make experiment-decide NAME=trip_duration [APPLY=1] [REGISTRY=url]   shift, promote or roll back the experiment
#   make up REGISTRY=http://127.0.0.1:5000   replicas serve the registry's @champion versions
#   make kafka / kafka-down    a single-node Kafka (KRaft) on $(KAFKA)
#   make stream [NAME=trip_duration] [IN=rides] [OUT=predictions]   the Go stream consumer (make down stops it)
#   make bench-stream   Go vs Python stream consumer, events/s and end-to-end latency
#   make monitor [NAME=…] [SINCE=7d]   drift and quality of the inference log (reports/monitor/, MONITOR_DB)
#   make prometheus / monitor-serve   Prometheus on :$(PROMETHEUS_PORT) scraping the replicas and the monitor's gauges
#   make postgres / postgres-down   a private PostgreSQL on 127.0.0.1:$(POSTGRES_PORT) for the monitor
#   make up AUTH=keys.txt [TLS=1]   API keys (python -m topology keys add keys.txt ID SCOPES), HTTPS (docs/security.md)
#   make up INFERENCE_LOG=0.1 [ACTUALS_TOKEN=token.txt]   inference log in $(STATE)/inference, ground truth (docs/inference-log.md)

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
SAMPLE   := data/green_tripdata_synthetic.parquet
DATA     ?= $(SAMPLE)
MODEL    ?= linear
# The family decides the task, and so the default name (trip_duration or
# tip_given): train/tasks.py says which (standard library only, no venv needed).
NAME     ?= $(shell $(PYTHON) -m train name $(MODEL))
MODELS   ?= models
PORT     ?= 8080
REPLICAS ?= 2
SERVER   ?= serve-go/bin/skl2go-server
# Everything the binary is built from, embedded files (//go:embed) included.
GO_SOURCES := $(shell find serve-go -name '*.go' -not -path '*/testdata/*') serve-go/http/openapi.yaml serve-go/go.mod serve-go/go.sum
TESTDATA := build/testdata
PARITY   := build/parity
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

BASE_PORT ?= 9001
STATE    ?= run
KAFKA    ?= 127.0.0.1:9092
IN       ?= rides
OUT      ?= predictions
STREAM   := serve-go/bin/skl2go-stream
LOAD     := serve-go/bin/skl2go-load
STREAM_METRICS ?= 127.0.0.1:9180

export PORT REPLICAS BASE_PORT MODELS STATE

.PHONY: mlflow mlflow-down mlflow-status promote experiment-decide
.PHONY: build-stream kafka kafka-down stream bench-stream
.PHONY: demo test setup venv venv-kserve proto build nginx wrk bench bench-model score score-new java bench-batch data train export up down status rollout chaos soak predict test-go test-python testdata docs compose-cli clean distclean

demo: setup train export up predict

setup: venv build nginx

# --- Python ---------------------------------------------------------------

# Every requirements/*.txt (pins by role: train, loadtest, verify, test, …),
# into one venv; `pip check` must pass on the whole set. requirements/clients-*.txt
# are client venvs of their own and requirements/*-server.txt tool venvs
# (packages the project's venv cannot hold).
REQUIREMENTS := $(filter-out requirements/clients-% requirements/%-server.txt requirements/proto.txt,$(sort $(wildcard requirements/*.txt)))
venv: $(VENV)/.installed
$(VENV)/.installed: $(REQUIREMENTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "skl2go needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(REQUIREMENTS:%=-r %)
	$(PY) -m pip check
	@touch $@

# KServe's Python SDK pins pandas<3, psutil<6 and python-dateutil<3, which
# the project's venv cannot hold: tests/system/test_kserve_sdk.py runs it
# from a client venv of its own (docs/clients.md).
KSERVE_VENV := .venv-kserve
venv-kserve: $(KSERVE_VENV)/.installed
$(KSERVE_VENV)/.installed: requirements/clients-kserve.txt
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/clients-kserve.txt
	$(KSERVE_VENV)/bin/python -m pip check
	@touch $@

data: $(SAMPLE)
$(SAMPLE): train/synth.py | $(VENV)/.installed
	$(PY) -m train synth --out $@

train: $(VENV)/.installed $(if $(filter $(SAMPLE),$(DATA)),$(SAMPLE))
	$(PY) -m train fit --data $(DATA) --model $(MODEL) --name $(NAME)

# With MLFLOW_TRACKING_URI set, export also logs an MLflow run and registers
# the version (train/tracking.py); PROMOTE=1 moves the champion alias to it.
export: $(VENV)/.installed
	$(PY) -m train export --name $(NAME) --models $(MODELS)

# --- MLflow: tracking server + model registry (docs/registry.md) -----------
#
# The server runs from its own venv: mlflow's pins clash with the project's
# (requirements/mlflow-server.txt says how).
MLFLOW_VENV := .venv-mlflow
MLFLOW_PORT ?= 5000
ALIAS    ?= champion
export MLFLOW_PORT PROMOTE

$(MLFLOW_VENV)/.installed: requirements/mlflow-server.txt
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/mlflow-server.txt
	$(MLFLOW_VENV)/bin/python -m pip check
	@touch $@

mlflow: $(MLFLOW_VENV)/.installed $(VENV)/.installed
	$(PY) -m topology.mlflow start --port $(MLFLOW_PORT)

mlflow-down: $(VENV)/.installed
	$(PY) -m topology.mlflow stop

mlflow-status: $(VENV)/.installed
	$(PY) -m topology.mlflow status

promote: $(VENV)/.installed
	@test -n "$(VERSION)" || { echo "usage: make promote NAME=trip_duration VERSION=3 [ALIAS=champion]"; exit 2; }
	MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://127.0.0.1:$(MLFLOW_PORT)} \
		$(PY) -m train.tracking promote --name $(NAME) --version $(VERSION) --alias $(ALIAS)

# An experiment's decision from the inference log ($(STATE)/inference) and
# the replicas' /metrics (guard rails); APPLY=1 carries it out (docs/experiments.md).
experiment-decide: $(VENV)/.installed
	$(PY) -m experiments decide $(NAME) --models $(MODELS) --state $(STATE) $(if $(APPLY),--apply) $(if $(REGISTRY),--registry $(REGISTRY)) \
		$(foreach i,$(shell seq 0 $$(($(REPLICAS)-1))),--metrics http://127.0.0.1:$$(($(BASE_PORT)+$(i)))/metrics)

# --- Monitoring: the inference log against each version's reference data --
#
# The monitor runs from its own venv: Evidently 0.7 needs pandas<3
# (requirements/monitor-server.txt says how). Without MONITOR_DB the figures
# go to the local cluster `make postgres` runs when it runs, else only to
# reports/monitor/.
MONITOR_VENV := .venv-monitor
SINCE    ?= 7d
POSTGRES_PORT ?= 5432
MONITOR_DB ?= $(shell $(PYTHON) -m topology.postgres status --port $(POSTGRES_PORT) >/dev/null 2>&1 && $(PYTHON) -m topology.postgres url --port $(POSTGRES_PORT))
export POSTGRES_PORT
.PHONY: monitor postgres postgres-down

$(MONITOR_VENV)/.installed: requirements/monitor-server.txt
	$(PYTHON) -m venv $(MONITOR_VENV)
	$(MONITOR_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/monitor-server.txt
	$(MONITOR_VENV)/bin/python -m pip check
	@touch $@

monitor: $(MONITOR_VENV)/.installed
	$(MONITOR_VENV)/bin/python -m monitor report --state $(STATE) --models $(MODELS) --since $(SINCE) \
		$(if $(filter command line environment,$(origin NAME)),--name $(NAME)) $(if $(MONITOR_DB),--db $(MONITOR_DB))

postgres:
	$(PYTHON) -m topology.postgres start --port $(POSTGRES_PORT)

# The figures in MONITOR_DB as Prometheus gauges on 127.0.0.1:$(MONITOR_EXPORTER_PORT)
# (foreground), and Prometheus scraping it and the replicas.
MONITOR_EXPORTER_PORT ?= 9190
PROMETHEUS_PORT ?= 9090
export MONITOR_EXPORTER_PORT PROMETHEUS_PORT
.PHONY: monitor-serve prometheus prometheus-down
monitor-serve: $(MONITOR_VENV)/.installed
	$(if $(MONITOR_DB),,$(error make monitor-serve needs MONITOR_DB (or make postgres)))
	$(MONITOR_VENV)/bin/python -m monitor serve --db $(MONITOR_DB) --port $(MONITOR_EXPORTER_PORT)

# make monitor-loop NAME=… [EVERY=3600] [INCOMING=$(STATE)/incoming]: monitor every
# EVERY seconds; on drift, retrain on the TLC files dropped into INCOMING and
# stage a challenger in $(STATE)/challengers (monitor/loop.py).
EVERY    ?= 3600
INCOMING ?= $(STATE)/incoming
.PHONY: monitor-loop
monitor-loop: $(VENV)/.installed $(MONITOR_VENV)/.installed
	$(PY) -m monitor loop --name $(NAME) --state $(STATE) --models $(MODELS) --incoming $(INCOMING) --every $(EVERY)

prometheus:
	$(PYTHON) -m topology.prometheus start --port $(PROMETHEUS_PORT)

prometheus-down:
	$(PYTHON) -m topology.prometheus stop --port $(PROMETHEUS_PORT)

postgres-down:
	$(PYTHON) -m topology.postgres stop --port $(POSTGRES_PORT)

# --- Go server ------------------------------------------------------------

# -buildvcs=auto: GET /v2 reports the git revision built, even where GOFLAGS
# turns stamping off.
build: $(SERVER) $(STREAM) $(LOAD)
$(SERVER): $(GO_SOURCES)
	cd serve-go && go build -buildvcs=auto -trimpath -o bin/skl2go-server ./cmd/skl2go-server

# The bounded, checking REST and gRPC load generator bench, chaos and soak use.
$(LOAD): $(GO_SOURCES)
	cd serve-go && go build -trimpath -o bin/skl2go-load ./cmd/skl2go-load

build-stream: $(STREAM)
$(STREAM): $(GO_SOURCES)
	cd serve-go && go build -buildvcs=auto -trimpath -o bin/skl2go-stream ./cmd/skl2go-stream

# The gRPC service's Go code (serve-go/grpc/inferencepb), from its .proto:
# protoc from the grpcio-tools wheel pinned in requirements/proto.txt (a venv
# of its own), the plugins from serve-go/go.mod's tool block. The generated
# files are committed; TestGenerated (package grpc) fails when they differ.
PROTO_VENV := .venv-proto
PROTO_DIR  := serve-go/grpc/inferencepb
proto: $(PROTO_VENV)/.installed
	cd serve-go && go build -o bin/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
	$(PROTO_VENV)/bin/python -m grpc_tools.protoc -I $(PROTO_DIR) \
		--plugin=protoc-gen-go=serve-go/bin/protoc-gen-go --go_out=$(PROTO_DIR) --go_opt=paths=source_relative \
		--plugin=protoc-gen-go-grpc=serve-go/bin/protoc-gen-go-grpc --go-grpc_out=$(PROTO_DIR) --go-grpc_opt=paths=source_relative \
		$(PROTO_DIR)/grpc_predict_v2.proto
$(PROTO_VENV)/.installed: requirements/proto.txt
	$(PYTHON) -m venv $(PROTO_VENV)
	$(PROTO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/proto.txt
	$(PROTO_VENV)/bin/python -m pip check
	@touch $@

# --- Streaming: Kafka (KRaft, single node, 127.0.0.1) and the Go consumer --

kafka:
	$(PYTHON) -m topology.kafka start --port $(lastword $(subst :, ,$(KAFKA)))

kafka-down:
	$(PYTHON) -m topology.kafka stop --port $(lastword $(subst :, ,$(KAFKA)))

# The consumer of model NAME: events from topic IN, predictions to OUT, against KAFKA.
# REGISTRY=http://127.0.0.1:5000: scores with the version the alias points to.
stream: $(STREAM)
	SKL2GO_REGISTRY=$${SKL2GO_REGISTRY:-$(REGISTRY)} $(PYTHON) -m topology.stream start --name $(NAME) --metrics $(STREAM_METRICS) \
		--brokers $(KAFKA) --models $(MODELS) --input $(IN) --output $(OUT)

# Go consumer vs the Python baseline (kafka-python + sklearn) on the broker at
# KAFKA (started if it is the local one): reports/stream-bench.json.
bench-stream: build kafka bench-model
	$(PY) -m loadtest.stream_bench --bootstrap $(KAFKA) --models $(MODELS) --name $(NAME)

# --- Local topology: REPLICAS Go servers on 127.0.0.1:9001… behind nginx on 127.0.0.1:$(PORT)

nginx:
	@command -v nginx >/dev/null || { echo "installing nginx with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx; }

# python -m topology (stdlib only, so `make down` works without the venv).
# `make up` converges: on a running stack it changes only what differs.
# REGISTRY=http://127.0.0.1:5000: the replicas serve the versions the
# registry's alias (SKL2GO_REGISTRY_ALIAS, default champion) points to.
up: build nginx
	SKL2GO_REGISTRY=$${SKL2GO_REGISTRY:-$(REGISTRY)} $(PYTHON) -m topology up

down:
	$(PYTHON) -m topology down

status:
	$(PYTHON) -m topology status

rollout: build
	$(PYTHON) -m topology rollout

# Faults under a steady, checked load through nginx at 0.4 of the capacity
# measured at the start (verify/chaos/run.py), then reports/chaos.md and
# reports/chaos.json; fails if any request was lost.
# make chaos QUICK=1: the short form make test runs.
chaos: build nginx wrk testdata $(MLFLOW_VENV)/.installed
	$(PY) -m verify.chaos $(if $(QUICK),--short) --out reports

# make soak [MINUTES=30] [RATE=req/s]: a stack of its own at half its measured
# capacity (or RATE) for MINUTES, every answer checked, each replica's and
# nginx's memory sampled (verify/soak.py); fails on an error or on growth.
soak: build nginx wrk testdata
	$(PY) -m verify.soak --minutes $(or $(MINUTES),30) $(if $(RATE),--rate $(RATE)) --out reports

predict:
	@echo 'POST http://127.0.0.1:$(PORT)/v1/models/$(NAME):predict  (a 2.5-mile trip from zone 74 to 75, Tuesday 08:00)'
	@curl -sS --fail-with-body -H 'Content-Type: application/json' \
		-d '{"instances": [{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}]}' \
		http://127.0.0.1:$(PORT)/v1/models/$(NAME):predict
	@echo

# --- Batch scoring: TLC files -> parquet, with a published model version ---
#
# make score DATA="a.parquet …" OUT=out.parquet|out-dir [NAME=trip_duration] [VERSION=n | ALIAS=champion]
#            [OVERWRITE=1] [ENGINE=local|spark] [MASTER=local[*]]
ENGINE ?= local
MASTER ?= local[*]

# ALIAS=champion (given on the command line or in the environment): the
# version that registry alias points to, REGISTRY (or MLFLOW_TRACKING_URI)
# naming the MLflow server.
SCORE_MODEL = --name $(NAME) --models $(MODELS) --engine $(ENGINE) --master '$(MASTER)' \
	$(if $(VERSION),--version $(VERSION)) $(if $(filter command line environment,$(origin ALIAS)),--alias $(ALIAS))
SCORE_ENV = $(if $(REGISTRY),MLFLOW_TRACKING_URI=$(REGISTRY))

score: $(VENV)/.installed $(if $(filter spark,$(ENGINE)),java)
	@test -n "$(OUT)" || { echo 'make score needs OUT=<output parquet>'; exit 2; }
	$(SCORE_ENV) $(PY) -m batch score --data $(DATA) --out $(OUT) $(SCORE_MODEL) $(if $(OVERWRITE),--overwrite)

# make score-new DIR=incoming/ OUT_DIR=scored/ [NAME=…] [VERSION=n | ALIAS=champion] [ENGINE=…]:
# each parquet file of DIR without OUT_DIR/<stem>.scored.parquet yet (cron, the retraining loop).
score-new: $(VENV)/.installed $(if $(filter spark,$(ENGINE)),java)
	@test -n "$(DIR)" -a -n "$(OUT_DIR)" || { echo 'make score-new needs DIR=<incoming dir> OUT_DIR=<scored dir>'; exit 2; }
	$(SCORE_ENV) $(PY) -m batch score-new --dir $(DIR) --out-dir $(OUT_DIR) $(SCORE_MODEL)

# Spark needs Java 17 or newer: the system's OpenJDK 17 when none is found.
java:
	@java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])' || { echo "installing OpenJDK 17 with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openjdk-17-jre-headless; }

# make bench-batch [BENCH_ROWS=3000000] [ENGINES="local spark sklearn"] [MODEL=… NAME=…] [SKLEARN_CHUNK=n] [ROUNDS=n]:
# a yellow-shaped file scored by the local engine, Spark local and sklearn's
# predict (SKLEARN_CHUNK rows per call; 0, all at once), ROUNDS rounds in
# alternating order; reports/bench-batch-$(NAME).{md,json}, with each
# engine's time stage by stage.
BENCH_ROWS ?= 3000000
ENGINES  ?= local spark sklearn
SKLEARN_CHUNK ?= 0
ROUNDS   ?= 1
BENCH_TRIPS := build/bench/yellow_tripdata_synthetic_$(BENCH_ROWS).parquet
bench-batch: java bench-model $(BENCH_TRIPS)
	$(PY) -m batch.bench --data $(BENCH_TRIPS) --models $(MODELS) --name $(NAME) --out reports --engines $(ENGINES) \
		--sklearn-chunk $(SKLEARN_CHUNK) --rounds $(ROUNDS)

$(BENCH_TRIPS): train/synth.py | $(VENV)/.installed
	$(PY) -m train synth --schema yellow --rows $(BENCH_ROWS) --out $@

# --- Benchmarks (not part of `make test`: long, and they load the machine) --

wrk:
	@command -v wrk >/dev/null || { echo "installing wrk with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

# make bench [QUICK=1]: reports/bench.{json,md,png} and Locust's reports in reports/locust/.
# The families phase reuses the families `make parity` trains (build/parity, cached by its stamps).
bench: setup wrk bench-model bench-families
	$(PY) -m loadtest.bench $(if $(QUICK),--quick) --models $(MODELS) --name $(NAME) --families $(PARITY)

# make bench-shadow [SHADOW_ARGS=…]: a slow mirror (parity's random forest)
# beside a linear control, through nginx and 2 replicas, in alternating
# rounds with the mirror on and off: reports/bench-shadow.json.
.PHONY: bench-shadow
bench-shadow: build nginx $(PARITY)/stamps/linear $(PARITY)/stamps/random_forest
	$(PY) -m loadtest.shadow --control $(PARITY)/models/linear/1 --mirror $(PARITY)/models/random_forest/1 \
		--held-out $(PARITY)/build/linear $(SHADOW_ARGS)

# The benchmark needs a published version and the held-out trips it was trained without.
bench-model: $(VENV)/.installed
	@if ! ls -d $(MODELS)/$(NAME)/[0-9]* >/dev/null 2>&1 || [ ! -f build/$(NAME)/validation.parquet ]; then \
		$(MAKE) train export; fi

# --- Parity: every family through the real server, checked against sklearn -
#
# make parity [DATA=...]: trains and exports each family on DATA into
# build/parity/ (only those whose data, training code or pinned packages
# changed since), starts a Go replica behind nginx on free loopback ports,
# sends every held-out row through it, and writes reports/parity.{md,json}.
# Exits 1 if a family misses its bound.
.PHONY: parity FORCE
FAMILIES      := $(shell $(PYTHON) -m train families)

parity: build nginx $(FAMILIES:%=$(PARITY)/stamps/%)
	$(PY) -m verify.parity --data $(DATA) --models $(PARITY)/models --out reports

# A family is retrained when the data, the training code or the pinned
# packages are newer than its stamp, or DATA names other files.
$(PARITY)/stamps/%: $(PARITY)/data-files $(DATA) $(wildcard train/*.py) requirements/train.txt | $(VENV)/.installed
	rm -rf $(PARITY)/models/$* $(PARITY)/build/$*
	$(PY) -m train fit --data $(DATA) --model $* --name $* --build $(PARITY)/build
	$(PY) -m train export --name $* --build $(PARITY)/build --models $(PARITY)/models
	@mkdir -p $(@D) && touch $@

# The families the bench measures: parity's, trained only when stale.
.PHONY: bench-families
bench-families: $(FAMILIES:%=$(PARITY)/stamps/%)

$(PARITY)/data-files: FORCE
	@mkdir -p $(@D); echo '$(DATA)' | cmp -s - $@ || echo '$(DATA)' > $@

FORCE:

# --- Bring your own pipeline ------------------------------------------------
#
# make import PIPELINE=lin_reg.bin SAMPLE=records.jsonl NAME=course_duration [TASK=regression]
# converts a fitted pipeline (joblib or pickle: loading it runs its code),
# checks it on every sample row and derived edge rows, publishes the next
# version into $(MODELS)/NAME (docs/import.md). NAME must be given: the
# default one belongs to the trip models.
.PHONY: import import-docs
import: $(VENV)/.installed
	$(if $(PIPELINE),,$(error make import needs PIPELINE=file (joblib or pickle)))
	$(if $(filter command line environment,$(origin SAMPLE)),,$(error make import needs SAMPLE=file (parquet, csv or jsonl)))
	$(if $(filter command line environment,$(origin NAME)),,$(error make import needs NAME=model name))
	$(PY) -m train import --pipeline $(PIPELINE) --sample $(SAMPLE) --name $(NAME) --models $(MODELS) $(if $(TASK),--task $(TASK))

# The table of supported steps in docs/import.md, with the agreement measured
# on a fitted example of each (about a minute).
import-docs: $(VENV)/.installed
	rm -rf build/imports
	$(PY) -m verify.imports --out build/imports --docs docs/import.md

# --- Tests ----------------------------------------------------------------

test: setup wrk java testdata compose-cli venv-kserve $(MLFLOW_VENV)/.installed $(MONITOR_VENV)/.installed test-go test-python

# Small models for the Go tests, made by the Python side like any other: a
# regressor (trip_duration) and a classifier (tip_given).
testdata: $(TESTDATA)/models/.done
$(TESTDATA)/models/.done: $(VENV)/.installed train/*.py
	rm -rf $(TESTDATA)
	$(PY) -m train synth --rows 30000 --out $(TESTDATA)/trips.parquet
	$(PY) -m train fit --data $(TESTDATA)/trips.parquet --model linear --name trip_duration --build $(TESTDATA)/build
	$(PY) -m train export --name trip_duration --build $(TESTDATA)/build --models $(TESTDATA)/models
	$(PY) -m train fit --data $(TESTDATA)/trips.parquet --model logistic_regression --name tip_given --build $(TESTDATA)/build
	$(PY) -m train export --name tip_given --build $(TESTDATA)/build --models $(TESTDATA)/models
	@touch $@

test-go: build testdata $(PROTO_VENV)/.installed
	cd serve-go && SKL2GO_TEST_MODELS=$(abspath $(TESTDATA)/models) go test -race -count=1 ./...

# docs/server.md's tables of flags, endpoints and metrics, and
# docs/streaming.md's flags, are made from the code; test-go fails when they
# differ, and this rewrites them.
docs: testdata
	cd serve-go && SKL2GO_UPDATE_DOCS=1 SKL2GO_TEST_MODELS=$(abspath $(TESTDATA)/models) go test -count=1 -run '^TestDocs' ./http ./cmd/skl2go-server ./cmd/skl2go-stream

# make test-python [PYTEST=-m unit]: tests/unit (seconds, no server) and tests/system.
test-python: setup
	$(PY) -m pytest $(PYTEST)

# `docker compose config` validates docker-compose.yml. Where the Docker CLI has
# no compose plugin (as on the development machines), build the standalone
# compose CLI once from the Go module proxy (~2 minutes).
COMPOSE_VERSION := v2.40.3
compose-cli:
	@if docker compose version >/dev/null 2>&1; then echo "using docker compose"; \
	else $(MAKE) -s build/tools/docker-compose; fi

build/tools/docker-compose:
	@echo "building docker-compose $(COMPOSE_VERSION) from the Go module proxy (once)"
	@rm -rf build/tools/compose-src && mkdir -p build/tools
	@dir=$$(go mod download -json github.com/docker/compose/v2@$(COMPOSE_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
		test -n "$$dir" || { echo "could not download github.com/docker/compose/v2@$(COMPOSE_VERSION)"; exit 1; }; \
		cp -r "$$dir" build/tools/compose-src && chmod -R u+w build/tools/compose-src
	cd build/tools/compose-src && go build -trimpath -o ../docker-compose ./cmd
	@rm -rf build/tools/compose-src

clean: down
	rm -rf build run data serve-go/bin

distclean: clean
	rm -rf $(VENV) $(KSERVE_VENV) $(MONITOR_VENV) $(MODELS)/*/
