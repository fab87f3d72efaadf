#!/usr/bin/env bash
# The GPU checks in one short script (about 5-8 minutes on one H100/H200), for a session that is lent a GPU:
# the gpu-marked tests, the benchmarks on CUDA, and a short paper-layout run (ResNet-50, 256 x 128, batch 64,
# --bn-groups 4) on synthetic data. Records go to results/bench/ (and to $OUT when set, for the device tool).
# The run checks speed and the pipeline, not accuracy, on a machine without the ImageNet file: --pretrained none.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT_DIR=${OUT:-results/bench}
mkdir -p "$OUT_DIR" results/bench
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt" || status=1
$PY -m pytest -q -m gpu tests 2>&1 | tee "$OUT_DIR/gpu-tests.log" || status=1
$PY -m harness.bench.train_step --arch resnet50 --height 256 --width 128 --batch-size 64 --bn-groups 4 --amp \
    --out results/bench || status=1
$PY -m harness.bench.label_phase --size msmt17 --device cuda --out results/bench || status=1
$PY -m harness.bench.evaluation --size msmt17 --device cuda --out results/bench || status=1
$PY -m spal train -d synthetic --data-dir /tmp/spal-gpu-data --logs-dir /tmp/spal-gpu-logs -a resnet50 \
    --pretrained none --height 256 --width 128 -b 64 --bn-groups 4 --epochs 2 --iters 50 --eval-step 2 -j 8 --amp --device cuda \
    2>&1 | tail -20 | tee "$OUT_DIR/paper-layout-run.log" || status=1
cp /tmp/spal-gpu-logs/final.json "$OUT_DIR/paper-layout-run-final.json" 2>/dev/null || status=1
cp results/bench/*cuda*.json "$OUT_DIR/" 2>/dev/null || true
exit $status
