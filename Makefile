# Set-up is part of every target: the first run creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: main test bench bench-score bench-store bench-remote bench-rl lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,bench]"
	rm -f $(VENV)/.installed-* && touch $@

main: $(STAMP)  ## the main job: train, evaluate, commit, check out and score, on ../shared/data
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/main_job.sh

test: $(STAMP)  ## the test suite (store tests on SQLite and on a throwaway PostgreSQL server)
	bash scripts/ensure-postgresql.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## rewardkit against TRL RewardTrainer, best and as shipped: 4 tables, 3 repeats (see bench/README.md)
	$(BIN)/python bench/train_vs_trl.py --all --json bench/train_vs_trl.json

bench-score: $(STAMP)  ## texts/s of `score --data` (see bench/README.md)
	$(BIN)/python bench/score_speed.py --json bench/score_speed.json

bench-store: $(STAMP)  ## rewardkit's store against DVC, MLflow and cp: 10 versions of a 1 GiB model (see bench/README.md)
	$(BIN)/python bench/store_vs_dvc_mlflow.py --merge --json bench/store_vs_dvc_mlflow.json

bench-remote: $(STAMP)  ## push and clone to a directory and a moto S3 remote, rewardkit against DVC: 10 versions of a 1 GiB model (see bench/README.md)
	nice $(BIN)/python bench/remote_vs_dvc.py --json bench/remote_vs_dvc.json

bench-rl: $(STAMP)  ## the RL protocol: PPO on a reward learned from 100/300/700 preferences against PPO on the true reward, 4 tasks, 3 seeds; hours on 2 cores (see bench/README.md)
	nice $(BIN)/python bench/rl_protocol.py --json bench/rl_protocol.json

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
