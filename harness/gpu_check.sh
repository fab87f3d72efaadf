#!/usr/bin/env bash
# The GPU check in one script, for a bare lent GPU machine (a stock Python with torch >= 2.11, torchvision,
# numpy, scipy, pillow and tqdm; nothing installed, no network): about 5-8 minutes on one H100/H200.
#   1. harness.bench.gpu_protocol: a synthetic MSMT17-size set generated with every core, the paper protocol
#      (ResNet-50, --pretrained none, 256 x 128, batch 64, bf16) for 3 epochs with one evaluation, every phase
#      timed, the step ceiling as a CUDA graph, one evaluation at MSMT17's real test sizes, and the projection
#      of the 50-epoch protocol -> results/bench/gpu-protocol-msmt17-<device>.json
#   2. the gpu-marked tests (when pytest is there; only the files that hold them, so that tests needing
#      packages a bare image lacks are not even collected).
# Everything also goes to $OUT when it is set (the device tool brings that folder back).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR=${OUT:-results/bench}
mkdir -p "$OUT_DIR" results/bench
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt" || status=1
$PY -c "import torch, torchvision, numpy, scipy, PIL, tqdm; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$OUT_DIR/gpu.txt" || status=1
$PY -m harness.bench.gpu_protocol --out results/bench >"$OUT_DIR/gpu-protocol.log" 2>&1 || status=1
tail -n 30 "$OUT_DIR/gpu-protocol.log"
ls results/bench/gpu-protocol-msmt17-*.json >/dev/null 2>&1 || status=1
[ "$OUT_DIR" = results/bench ] || cp results/bench/gpu-protocol-msmt17-*.json "$OUT_DIR/" 2>/dev/null
if $PY -c "import pytest" 2>/dev/null; then
    # -o addopts= drops pyproject's pytest-benchmark option, which a bare image's pytest would not know.
    mapfile -t gpu_files < <(grep -rl "pytest.mark.gpu" tests --include='test_*.py' | sort)
    $PY -m pytest -q -m gpu -o addopts= -p no:cacheprovider -rs "${gpu_files[@]}" 2>&1 | tee "$OUT_DIR/gpu-tests.log" \
        || status=1
else
    echo "pytest is not installed: the gpu-marked tests did not run" | tee "$OUT_DIR/gpu-tests.log"
    status=1
fi
exit $status
