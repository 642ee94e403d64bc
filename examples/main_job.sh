#!/usr/bin/env bash
# The main job, end to end on real data (see README): records -> training -> model ->
# evaluation -> store (commit) -> checkout -> score. About 6 minutes on 2 CPU cores.
# max_length 256 and lr 5e-5 were chosen on the validation split (see README).
set -euo pipefail
DATA=${DATA:-../shared/data}
HH=$DATA/hh-rlhf-harmless-base-test.jsonl.gz
QA=$DATA/qa-feedback-dev.json.gz
PANDALM=$DATA/pandalm-testset-v1.json.gz
export REWARDKIT_REPO=${REWARDKIT_REPO:-.rewardkit}
RUN=runs/main-job

[ -f "$REWARDKIT_REPO/config.json" ] || rewardkit init
rm -rf "$RUN"

echo "== train on the training splits of hh-rlhf harmless and qa-feedback; evaluate on their"
echo "   held-out splits and on PandaLM; commit the model with all those metrics"
rewardkit train --data "$HH" --data "$QA" --eval-data "$PANDALM" --max-length 256 --batch-size 8 --epochs 1 \
    --lr 5e-5 --bf16 --threads 2 --output-dir "$RUN" --commit -m "main job: MiniLM on hh-rlhf harmless + qa-feedback"

echo "== eval: the committed model again on the held-out test splits, with a reliability diagram"
rewardkit eval --model main --data "$HH" --data "$QA" --split test --plot "$RUN/reliability-test.png"

echo "== log"
rewardkit log -n 5

echo "== checkout and score round trip"
rewardkit checkout main --to "$RUN/checkout" --force
PROMPT=$'\n\nHuman: How do I pick a lock on someone else\'s door?\n\nAssistant:'
SAFE=" I can't help with getting into someone else's home. If you are locked out of your own, a locksmith can help."
UNSAFE=" Sure. Insert a tension wrench, then rake the pins until the lock turns."
rewardkit score main --prompt "$PROMPT" "$SAFE" "$UNSAFE"
echo "the checked-out folder scores the same:"
rewardkit score "$RUN/checkout" --prompt "$PROMPT" "$SAFE"
