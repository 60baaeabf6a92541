#!/bin/bash
# The value of pre-training on real data: BERT-Mini pre-trained on English Wikipedia from
# ../shared/data, then fine-tuned on GLUE tasks next to the same architecture from random init.
# Outputs go to outputs/real/ (outside the default DVC pipeline); runs are tracked in MLflow.
#   benchmarks/pretraining_value.sh prepare      # ~40 s: 16k WordPiece vocab + shards
#   STEPS=3000 benchmarks/pretraining_value.sh pretrain   # ~25 min on 2 CPU cores
#   TASKS="rte mrpc stsb cola" benchmarks/pretraining_value.sh finetune
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
P="corpus=wikipedia_en tokenizer.vocab_size=16000 model=mini pretrain.max_seq_length=128
   pretrain.max_predictions_per_seq=20 pretrain.lr=5e-4 pretrain.warmup_steps=200 pretrain.max_steps=${STEPS:-3000}
   pretrain.val_every_n_steps=500 pretrain.checkpoint_every_n_steps=500
   paths.prepared=outputs/real/prepare paths.checkpoints=outputs/real/ckpt paths.pretrained=outputs/real/pretrain
   paths.metrics=outputs/real/metrics paths.plots=outputs/real/plots paths.finetuned=outputs/real/finetune
   paths.evaluated=outputs/real/eval"
case "${1:-}" in
  prepare) $PY pipelines/prepare.py $P ;;
  pretrain) $PY pipelines/pretrain.py $P ;;
  finetune)
    for t in ${TASKS:-rte mrpc stsb cola}; do
      $PY pipelines/finetune.py $P task=$t task.random_init_control=true
      $PY pipelines/evaluate.py $P task=$t task.random_init_control=true
    done
    for t in ${TASKS:-rte mrpc stsb cola}; do
      $PY -c "import json,sys; m=json.load(open(sys.argv[1])); print(sys.argv[2], 'pre-trained', round(m['score'],4), 'random init', round(m['random_init_score'],4))" \
        outputs/real/metrics/eval/$t.json $t
    done ;;
  *) echo "usage: $0 prepare|pretrain|finetune" >&2; exit 2 ;;
esac
