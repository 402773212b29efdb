# skl2go: train a sklearn pipeline, export it to ONNX, serve it from Go
# replicas behind nginx.
#
#   make demo     set everything up, train on sample data, serve, print a prediction
#   make test     everything tested (Python, Go, the real topology)
#
#   make train export [DATA="a.parquet b.parquet"] [MODEL=linear] [NAME=trip_duration]
#   make import PIPELINE=model.bin SAMPLE=records.jsonl NAME=name   a fitted pipeline you bring
#   make parity        every model family through the real server, checked against sklearn
#   make up [PORT=8080] [REPLICAS=2]      make down      make predict
#   make rollout   restart the replicas one at a time, no request lost
#   make chaos     faults under load through nginx; writes reports/chaos.{md,json}
#   make bench [QUICK=1]   Go vs the sklearn baseline under Locust and wrk (reports/)

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
SAMPLE   := data/green_tripdata_synthetic.parquet
DATA     ?= $(SAMPLE)
MODEL    ?= linear
CLASSIFIERS := logistic_regression random_forest_classifier hist_gradient_boosting_classifier
# The family decides the task: regressors predict trip_duration, classifiers tip_given.
NAME     ?= $(if $(filter $(MODEL),$(CLASSIFIERS)),tip_given,trip_duration)
MODELS   ?= models
PORT     ?= 8080
REPLICAS ?= 2
SERVER   := serve-go/bin/skl2go-server
# Everything the binary is built from, embedded files (//go:embed) included.
GO_SOURCES := $(shell find serve-go -name '*.go' -not -path '*/testdata/*') serve-go/http/openapi.yaml serve-go/go.mod serve-go/go.sum
TESTDATA := build/testdata
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

BASE_PORT ?= 9001
STATE    ?= run

export PORT REPLICAS BASE_PORT MODELS STATE

.PHONY: demo test setup venv build nginx wrk bench bench-model data train export up down status rollout chaos predict test-go test-python testdata compose-cli clean distclean

demo: setup train export up predict

setup: venv build nginx

# --- Python ---------------------------------------------------------------

venv: $(VENV)/.installed
# requirements/*.txt: the pins of optional parts (import.txt: XGBoost, LightGBM, onnxmltools).
$(VENV)/.installed: requirements.txt $(wildcard requirements/*.txt)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "skl2go needs Python 3.11 or newer, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt $(patsubst %,-r %,$(wildcard requirements/*.txt))
	@touch $@

data: $(SAMPLE)
$(SAMPLE): train/synth.py | $(VENV)/.installed
	$(PY) -m train synth --out $@

train: $(VENV)/.installed $(if $(filter $(SAMPLE),$(DATA)),$(SAMPLE))
	$(PY) -m train fit --data $(DATA) --model $(MODEL) --name $(NAME)

export: $(VENV)/.installed
	$(PY) -m train export --name $(NAME) --models $(MODELS)

# --- Go server ------------------------------------------------------------

# -buildvcs=auto: GET /v2 reports the git revision built, even where GOFLAGS
# turns stamping off.
build: $(SERVER)
$(SERVER): $(GO_SOURCES)
	cd serve-go && go build -buildvcs=auto -trimpath -o bin/skl2go-server ./cmd/skl2go-server

# --- Local topology: REPLICAS Go servers on 127.0.0.1:9001… behind nginx on 127.0.0.1:$(PORT)

nginx:
	@command -v nginx >/dev/null || { echo "installing nginx with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx; }

up: build nginx
	nginx/topology.sh up

down:
	nginx/topology.sh down

status:
	nginx/topology.sh status

rollout: build
	nginx/topology.sh rollout

# Faults under a steady Locust load through nginx (loadtest/chaos/run.py), then
# reports/chaos.md and reports/chaos.json; fails if any request was lost.
chaos: build nginx testdata
	$(PY) -m loadtest.chaos --out reports

predict:
	@echo 'POST http://127.0.0.1:$(PORT)/v1/models/$(NAME):predict  (a 2.5-mile trip from zone 74 to 75, Tuesday 08:00)'
	@curl -sS --fail-with-body -H 'Content-Type: application/json' \
		-d '{"instances": [{"PULocationID": 74, "DOLocationID": 75, "trip_distance": 2.5, "pickup_hour": 8, "pickup_weekday": 1}]}' \
		http://127.0.0.1:$(PORT)/v1/models/$(NAME):predict
	@echo

# --- Benchmarks (not part of `make test`: long, and they load the machine) --

wrk:
	@command -v wrk >/dev/null || { echo "installing wrk with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

# make bench [QUICK=1]: reports/bench.{json,md,png} and Locust's reports in reports/locust/.
bench: setup wrk bench-model
	$(PY) -m loadtest.bench $(if $(QUICK),--quick) --models $(MODELS) --name $(NAME)

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
PARITY        := build/parity
FAMILIES      := linear ridge random_forest hist_gradient_boosting gradient_boosting $(CLASSIFIERS)

parity: build nginx $(FAMILIES:%=$(PARITY)/stamps/%)
	$(PY) -m loadtest.parity --data $(DATA) --models $(PARITY)/models --out reports

# A family is retrained when the data, the training code or the pinned
# packages are newer than its stamp, or DATA names other files.
$(PARITY)/stamps/%: $(PARITY)/data-files $(DATA) $(wildcard train/*.py) requirements.txt | $(VENV)/.installed
	rm -rf $(PARITY)/models/$* $(PARITY)/build/$*
	$(PY) -m train fit --data $(DATA) --model $* --name $* --build $(PARITY)/build
	$(PY) -m train export --name $* --build $(PARITY)/build --models $(PARITY)/models
	@mkdir -p $(@D) && touch $@

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

test: setup wrk testdata compose-cli test-go test-python

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

test-go: build testdata
	cd serve-go && SKL2GO_TEST_MODELS=$(abspath $(TESTDATA)/models) go test -race -count=1 ./...

test-python: setup
	$(PY) -m pytest

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
	rm -rf $(VENV) $(MODELS)/*/
