#!/bin/sh
# Reproduce the adapters of the built-in tasks in gemmapipe/adapters/ (CPU, torch bf16 autocast; a GPU if torch
# sees one). Usage: recipes/train_builtin.sh [invoice] [banking77] [redact] [log-severity]   (all when none is named)
# log-severity is the task of the gemmapipe-logs plugin (pip install ./plugins/gemmapipe-logs); its adapter goes into
# that package, plugins/gemmapipe-logs/gemmapipe_logs/adapters/log-severity.
#
# Training data: the train splits of ../shared/datasets (each run holds out a dev split of it for early stopping)
# and the generated data of redact and log-severity (recipes/make_redact_data.py, recipes/make_log_severity_data.py).
# The test splits are never read here: score them with bench/accuracy_bench.py. An interrupted run resumes from its checkpoint in $WORK when started again.
#
# invoice, banking77 and log-severity were trained in stages: each stage continues the one before
# (--init-adapter: same data, seed and dev split, the next epochs' shuffles, a fresh warm-up and decay), and was
# kept because its dev loss fell (banking77 0.053 -> 0.034; invoice 0.074 -> 0.062 -> 0.058; log-severity 0.072 -> 0.0068).
# invoice swaps half the values it copies for other receipts' each epoch (--swap-values 0.5, since 2026-11-28); the
# same stages without it (the adapter before) reached 0.087 -> 0.074 -> 0.060, and 87.1 % mean field exact match on the
# dev split against 86.3 % with it (of 124 fields, 2 gained and 3 lost), but it does worse on shops held out (below).
# Tried and not kept (dev loss never below 0.060), before swapping: invoice 2 more epochs at 2e-4 (0.064-0.077; stopped
# after 1.7 epochs), 1 more epoch at 5e-5 (0.062-0.064), 2 more epochs at 2e-4 continuing the adapter without swapping
# but with it (best 0.061; dev exact match unchanged at 88.7 %); a fresh rank-64 adapter, 4 epochs at 3e-4 (--rank 64;
# best dev loss 0.063, dev exact match 89.5 % against 88.7 %: of 124 fields two gained, one lost; four times the size).
# A random dev split mostly holds shops the adapter trained on; recipes/sroie_vendor_split.py holds out whole shops.
# Trained on its rest.jsonl (--dev-fraction 0.05, as here): 2 epochs at 3e-4 then 1 at 2e-4 score 72.5 % / 74.2 %
# mean field exact match on its dev_unseen.jsonl; the same with value swapping 0.5 73.8 % / 77.9 %.
set -eu
cd "$(dirname "$0")/.."
DATASETS=${DATASETS:-../shared/datasets}
WORK=${WORK:-${TMPDIR:-/tmp}/gemmapipe-train}
[ $# -gt 0 ] || set -- invoice banking77 redact log-severity

train_invoice() {
    gemmapipe train --task invoice --data "$DATASETS/sroie/train.jsonl" --batch-size 8 --dev-fraction 0.05 \
        --swap-values 0.5 --eval-every 25 --checkpoint-every 25 "$@"
}
train_banking77() {
    gemmapipe train --task banking77 --data "$DATASETS/banking77/train.jsonl" --batch-size 32 --dev-fraction 0.05 \
        --eval-every 50 --checkpoint-every 25 "$@"
}
train_log_severity() {
    gemmapipe train --task log-severity --data recipes/log-severity/train.jsonl --batch-size 16 --dev-fraction 0.1 \
        --eval-every 15 --checkpoint-every 15 "$@"
}

for task in "$@"; do
    case $task in
    invoice)
        train_invoice --out "$WORK/invoice-1" --epochs 2 --learning-rate 3e-4
        train_invoice --out "$WORK/invoice-2" --init-adapter "$WORK/invoice-1" --epochs 1 --learning-rate 2e-4
        train_invoice --out "$WORK/invoice" --init-adapter "$WORK/invoice-2" --epochs 1 --learning-rate 2e-4 ;;
    banking77)
        train_banking77 --out "$WORK/banking77-1" --epochs 1 --learning-rate 4e-4
        train_banking77 --out "$WORK/banking77" --init-adapter "$WORK/banking77-1" --epochs 2 --learning-rate 2e-4 ;;
    redact)
        python recipes/make_redact_data.py --out recipes/redact
        gemmapipe train --task redact --data recipes/redact/train.jsonl --out "$WORK/redact" \
            --epochs 2 --learning-rate 3e-4 --batch-size 16 --dev-fraction 0.1 --eval-every 20 --checkpoint-every 20 ;;
    log-severity)
        python recipes/make_log_severity_data.py --out recipes/log-severity
        train_log_severity --out "$WORK/log-severity-1" --epochs 2 --learning-rate 3e-4 --rank 8
        train_log_severity --out "$WORK/log-severity" --init-adapter "$WORK/log-severity-1" --epochs 2 --learning-rate 2e-4 ;;
    *)
        echo "train_builtin.sh: unknown task '$task' (invoice, banking77, redact or log-severity)" >&2; exit 2 ;;
    esac
    case $task in
    log-severity) dest=plugins/gemmapipe-logs/gemmapipe_logs/adapters/$task ;;
    *) dest=gemmapipe/adapters/$task ;;
    esac
    mkdir -p "$dest"
    cp "$WORK/$task/adapter_config.json" "$WORK/$task/adapter_model.safetensors" "$WORK/$task/gemmapipe-adapter.json" "$dest/"
    echo "train_builtin.sh: $dest updated" >&2
done
