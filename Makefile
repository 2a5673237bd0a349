# CoPE Studio. Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql://postgres@127.0.0.1:5432/cope_studio
REDIS_URL ?= redis://127.0.0.1:6379/5

.PHONY: run test test-core lint format bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	bin/run-studio

# The whole suite on PostgreSQL + Redis + real Celery workers + Chromium, then the core on SQLite.
test: $(STAMP)
	bin/check-test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	DJANGO_SECRET_KEY=test-only DATABASE_URL=$(PG_URL) COPE_TEST_REDIS_URL=$(REDIS_URL) \
	  HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/pytest -p no:cacheprovider
	$(MAKE) test-core

test-core: $(STAMP)
	env -u DATABASE_URL DJANGO_SECRET_KEY=test-only HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
	  $(BIN)/pytest -p no:cacheprovider tests/test_settings.py tests/test_env_example.py \
	  tests/test_deploy_settings.py tests/accounts tests/policies tests/labeling \
	  -m "not browser and not celery_worker"
	# The embedded default's transport: a real model worker over the filesystem broker.
	env -u DATABASE_URL DJANGO_SECRET_KEY=test-only HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
	  $(BIN)/pytest -p no:cacheprovider tests/labeling/jobs/test_celery.py -k real_workers_label_every_item_once

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks print one JSON object each. They use their own PostgreSQL database (BENCH_DB).
BENCH_DB ?= cope_bench
BENCH_URL = postgresql://postgres@127.0.0.1:5432/$(BENCH_DB)
BENCH_CACHE_URL ?= redis://127.0.0.1:6379/6
# The benchmarks serve pages with gunicorn, which refuses a short (weak) secret key.
BENCH_KEY = bench-only-key-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m worker.bench --json
	# A fresh database each run: earlier runs' deleted rows are not history a deployment has
	# (PostgreSQL's autovacuum would have cleared them; some servers run with it off).
	psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS $(BENCH_DB) WITH (FORCE)'
	psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE $(BENCH_DB)'
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py migrate -v0
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) CELERY_BROKER_URL=$(REDIS_URL) \
	  $(BIN)/python manage.py bench_import --items 1000000
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) CELERY_BROKER_URL=$(REDIS_URL) \
	  $(BIN)/python manage.py bench_job --items 1000000 --start-only
	# As docker-compose deploys it: PostgreSQL, and Redis as the web processes' shared cache.
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) COPE_CACHE_URL=$(BENCH_CACHE_URL) \
	  $(BIN)/python manage.py bench_queue --labels 100000,1000000,5000000
	# The review queue on the embedded default (SQLite, gunicorn as gunicorn.conf.py sets it up),
	# 325,000 items stored at 1M labels, in a fresh data folder of its own.
	rm -rf var/bench-queue
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-queue DJANGO_SECRET_KEY=$(BENCH_KEY) $(BIN)/python manage.py migrate -v0
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-queue DJANGO_SECRET_KEY=$(BENCH_KEY) \
	  $(BIN)/python manage.py bench_queue --labels 100000,1000000,5000000
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py bench_items --items 100000
	DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py bench_try --redis-url $(REDIS_URL)
	# The API on the embedded default (SQLite and the filesystem broker, in a data folder of its
	# own), then as deployed with PostgreSQL and Redis.
	env -u DATABASE_URL COPE_DATA_DIR=var/bench DJANGO_SECRET_KEY=$(BENCH_KEY) $(BIN)/python manage.py migrate -v0
	env -u DATABASE_URL COPE_DATA_DIR=var/bench DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 \
	  $(BIN)/python manage.py bench_api
	DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 DATABASE_URL=$(BENCH_URL) COPE_CACHE_URL=$(BENCH_CACHE_URL) \
	  $(BIN)/python manage.py bench_api --broker redis --redis-url $(REDIS_URL)
	DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 DATABASE_URL=$(BENCH_URL) CELERY_BROKER_URL=$(REDIS_URL) \
	  $(BIN)/python manage.py bench_job --items 100000
	# A version's probes and a what-if edit, through Redis and real workers (CPU baseline).
	DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 DATABASE_URL=$(BENCH_URL) CELERY_BROKER_URL=$(REDIS_URL) \
	  $(BIN)/python manage.py bench_probe --items 200
	DJANGO_SECRET_KEY=$(BENCH_KEY) HF_HUB_OFFLINE=1 DATABASE_URL=$(BENCH_URL) CELERY_BROKER_URL=$(REDIS_URL) \
	  $(BIN)/python manage.py bench_whatif
	# Item content search over 1,000,000 items: PostgreSQL full-text (GIN), then SQLite FTS5 in a
	# fresh data folder of its own.
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py bench_search --items 1000000
	rm -rf var/bench-search
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-search DJANGO_SECRET_KEY=$(BENCH_KEY) $(BIN)/python manage.py migrate -v0
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-search DJANGO_SECRET_KEY=$(BENCH_KEY) \
	  $(BIN)/python manage.py bench_search --items 1000000
	# The jobs page over 200,000 jobs and reviewer agreement at 90,000 votes, both databases.
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py bench_job_list --jobs 200000
	DJANGO_SECRET_KEY=$(BENCH_KEY) DATABASE_URL=$(BENCH_URL) $(BIN)/python manage.py bench_agreement
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-search DJANGO_SECRET_KEY=$(BENCH_KEY) \
	  $(BIN)/python manage.py bench_job_list --jobs 200000
	env -u DATABASE_URL COPE_DATA_DIR=var/bench-search DJANGO_SECRET_KEY=$(BENCH_KEY) \
	  $(BIN)/python manage.py bench_agreement

clean:
	rm -rf $(VENV) var artifacts
