#!/usr/bin/env bash
# Weight-space merges of reward models (WARM, TIES) on real data, end to end:
#   1. train a base model on hh-rlhf harmless + qa-feedback and commit it on main;
#   2. fine-tune three branches from it: harmless only, qa-feedback only, both at another lr;
#   3. merge the three with `average` (WARM, Ramé et al. 2024) and with `ties` (Yadav et al. 2023);
#   4. print every parent's and every merge's accuracy on the held-out test splits and on PandaLM.
# Every model trains with seed $SEED, so the held-out splits are the same for all of them (the
# split of a source depends only on its own pairs and the seed) and no branch trains on
# another's test pairs. Sizes come from the environment; the defaults are the full run, e.g.
#   LIMIT_BASE=24 LIMIT=24 MAX_LENGTH=64 bash examples/merge.sh     # a smoke test in a few minutes
set -euo pipefail
DATA=${DATA:-../shared/data}
HH=${HH:-$DATA/hh-rlhf-harmless-base-test.jsonl.gz}
QA=${QA:-$DATA/qa-feedback-dev.json.gz}
PANDALM=${PANDALM:-$DATA/pandalm-testset-v1.json.gz}
LIMIT_BASE=${LIMIT_BASE:-500}      # training pairs per source for the base model
LIMIT=${LIMIT:-}                   # training pairs per source for each branch (empty: all)
MAX_LENGTH=${MAX_LENGTH:-256}
EPOCHS=${EPOCHS:-1}
LR=${LR:-5e-5}
SEED=${SEED:-42}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-python}
export REWARDKIT_REPO=${REWARDKIT_REPO:-.rewardkit-merge}
RUN=${RUN:-runs/merge-example}

rm -rf "$RUN" "$REWARDKIT_REPO"
mkdir -p "$RUN/eval"
rewardkit init
common=(--max-length "$MAX_LENGTH" --batch-size 8 --epochs "$EPOCHS" --seed "$SEED" --threads "$THREADS" --json)
limit() { [ -n "$1" ] && echo "--limit $1" || true; }

echo "== base: hh-rlhf harmless + qa-feedback, $LIMIT_BASE pairs per source, committed on main"
# shellcheck disable=SC2046
rewardkit train --data "$HH" --data "$QA" $(limit "$LIMIT_BASE") --lr "$LR" "${common[@]}" \
    --output-dir "$RUN/base-run" -m "base: MiniLM on hh-rlhf harmless + qa-feedback" > "$RUN/base.json"
rewardkit checkout main --to "$RUN/base"

train_branch() {  # NAME LR DATA... : a branch from main, fine-tuned from the base's weights
    local name=$1 lr=$2; shift 2
    echo "== branch $name: fine-tune the base on $(for d in "$@"; do basename "$d"; done | paste -sd+), lr $lr"
    rewardkit branch "$name" main
    rewardkit switch "$name"
    local data=(); for d in "$@"; do data+=(--data "$d"); done
    # shellcheck disable=SC2046
    rewardkit train "${data[@]}" --base-model "$RUN/base" $(limit "$LIMIT") --lr "$lr" "${common[@]}" \
        --output-dir "$RUN/$name-run" -m "$name: fine-tuned from the base" > "$RUN/$name.json"
}
train_branch harmless "$LR" "$HH"
train_branch qa "$LR" "$QA"
train_branch both "$(${PYTHON} -c "print($LR / 2)")" "$HH" "$QA"

for strategy in average ties; do
    echo "== merge harmless + qa + both with --strategy $strategy (on a branch $strategy started at harmless)"
    rewardkit branch "$strategy" harmless
    rewardkit switch "$strategy"
    rewardkit merge qa both --strategy "$strategy" --eval "$PANDALM" -m "$strategy of harmless, qa, both"
done
rewardkit switch main

echo "== evaluate every model on the held-out test splits (recomputed from each commit's seed) and on PandaLM"
for ref in main harmless qa both average ties; do
    rewardkit eval --model "$ref" --data "$HH" --data "$QA" --split test --json > "$RUN/eval/$ref-test.json"
    rewardkit eval --model "$ref" --data "$PANDALM" --json > "$RUN/eval/$ref-pandalm.json"
done
rewardkit log --all --graph 2>/dev/null || rewardkit log average

"$PYTHON" - "$RUN/eval" "$(basename "$HH")" "$(basename "$QA")" <<'EOF'
import json, sys
from pathlib import Path

folder, hh_name, qa_name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
names = {"main": "base", "harmless": "harmless", "qa": "qa", "both": "both", "average": "average (WARM)",
         "ties": "ties"}
print(f"\n{'model':<16}{'hh test':>10}{'qa test':>10}{'test all':>10}{'PandaLM':>10}   (pairwise accuracy, %)")
for ref, label in names.items():
    test = json.loads((folder / f"{ref}-test.json").read_text())
    pandalm = json.loads((folder / f"{ref}-pandalm.json").read_text())
    by_file = {source.rpartition(":")[2]: v["accuracy"] for source, v in test["by_source"].items()}  # format:file
    hh, qa = (by_file.get(name, float("nan")) for name in (hh_name, qa_name))
    print(f"{label:<16}{100 * hh:>10.1f}{100 * qa:>10.1f}{100 * test['accuracy']:>10.1f}"
          f"{100 * pandalm['accuracy']:>10.1f}")
EOF
