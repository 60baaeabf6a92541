#!/usr/bin/env bash
# The GPU benchmarks in one short call (about 7 minutes on one H100/H200):
#  1. prepare two English Wikipedia files from the shared data (4k WordPiece, ~9M tokens);
#  2. benchmarks/pretrain_vs_hf.py for BERT-Base (batch 128) and BERT-Mini (batch 256), pairs of
#     <= 128 tokens: stock HF fp32 and bf16 autocast, our bare steps, our stage eager and compiled;
#  3. benchmarks/finetune_steps.py: BERT-Small on RTE at batch 32, our stage against a bare loop;
#  4. same-token loss: the Mini stage padded and eager against unpadded and compiled, on the same
#     pairs and masks, held-out MLM loss at three points.
#
#   bash benchmarks/gpu_benchmark.sh                   # results in outputs/gpu_benchmark/
#   PROBE=1 bash benchmarks/gpu_benchmark.sh           # instead of 2-4: optimizer_step.py (AdamW, LAMB)
#                                                      # and gpu_step_probe.py --quick for $BIG (~6-7 min,
#                                                      # estimated): compiled vs CUDA graphs
#   DEVICE=cpu SIZES="tiny tiny" BATCHES="16 16" FT_SIZE=tiny STEPS=10 CURVE_STEPS=30 \
#     bash benchmarks/gpu_benchmark.sh                 # a quick check of the script on a CPU
#
# SHARED_DATA: where the shared data is (default ../shared/data); OUT_DIR: where results go;
# PYTHON: the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
read -r BIG SMALL <<<"${SIZES:-base mini}"
read -r BIG_BATCH SMALL_BATCH <<<"${BATCHES:-128 256}"
FT_SIZE=${FT_SIZE:-small}
STEPS=${STEPS:-40}
CURVE_STEPS=${CURVE_STEPS:-450}
OUT_DIR=${OUT_DIR:-outputs/gpu_benchmark}
DATA=${SHARED_DATA:-../shared/data}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export MLFLOW_TRACKING_URI="sqlite:///$OUT_DIR/mlflow.db" MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false HF_HUB_OFFLINE=1
trainer=$([ "$DEVICE" = cuda ] && echo gpu || echo "$DEVICE")
stamp() { echo "== $1 ($(date -u +%T))"; }

stamp prepare
$PY pipelines/prepare.py corpus=wikipedia_en "paths.shared_data=$DATA" paths.prepared="$OUT_DIR/prepare" \
  paths.metrics="$OUT_DIR/prepare_metrics" paths.plots="$OUT_DIR/prepare_plots" \
  'corpus.files=[${paths.shared_data}/wikipedia-en/wikipedia_en_01.txt.xz,${paths.shared_data}/wikipedia-en/wikipedia_en_02.txt.xz]'

if [ "${PROBE:-0}" = 1 ]; then
  stamp "optimizer step, $BIG"
  $PY benchmarks/optimizer_step.py --device "$DEVICE" --sizes "$BIG"
  stamp "step probe, $BIG"
  $PY benchmarks/gpu_step_probe.py --device "$DEVICE" --prepared "$OUT_DIR/prepare" --size "$BIG" \
    --batch-size "$BIG_BATCH" --steps "$STEPS" --quick
  stamp done
  exit 0
fi

stamp "pre-training throughput, $BIG"
$PY benchmarks/pretrain_vs_hf.py --device "$DEVICE" --prepared "$OUT_DIR/prepare" --sizes "$BIG" \
  --batch-size "$BIG_BATCH" --steps "$STEPS" --stage-compile
stamp "pre-training throughput, $SMALL"
$PY benchmarks/pretrain_vs_hf.py --device "$DEVICE" --prepared "$OUT_DIR/prepare" --sizes "$SMALL" \
  --batch-size "$SMALL_BATCH" --steps $((STEPS * 3)) --stage-compile

stamp "fine-tuning steps/s"
$PY benchmarks/finetune_steps.py --device "$DEVICE" --prepared "$OUT_DIR/prepare" --task rte --size "$FT_SIZE" \
  --set "paths.shared_data=$DATA"

stamp "same-token loss, $SMALL"
for run in padded_eager:trainer.unpad=false unpadded_compiled:trainer.compile=true; do
  name=${run%%:*}
  $PY pipelines/pretrain.py "model=$SMALL" "trainer=$trainer" "${run#*:}" paths.prepared="$OUT_DIR/prepare" \
    pretrain.max_steps="$CURVE_STEPS" pretrain.val_every_n_steps=$((CURVE_STEPS / 3)) pretrain.val_max_examples=2000 \
    pretrain.checkpoint_every_n_steps=1000000 paths.pretrained="$OUT_DIR/$name/model" \
    paths.checkpoints="$OUT_DIR/$name/ckpt" paths.metrics="$OUT_DIR/$name/metrics" paths.plots="$OUT_DIR/$name/plots"
done
for name in padded_eager unpadded_compiled; do
  echo "$name:" && cat "$OUT_DIR/$name/plots/pretrain/valid.csv"
done
stamp done
