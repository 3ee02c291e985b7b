#!/usr/bin/env bash
# Train the course's three models from scratch with one documented command each.
#
#   scripts/train_all.sh            # the full configs (the shipped weights)
#   scripts/train_all.sh fast       # the learner's fast configs
#   scripts/train_all.sh scenes     # the scenes models (judge, denoiser, weak denoiser, noisy classifier)
#   EXPORT=1 scripts/train_all.sh   # ... and copy the results into tutorial_lib/assets/models
#
# Each step resumes from runs/<model>-<config>/checkpoint.pt if it exists, so an
# interrupted run continues where it stopped. Measured times on the course's
# 2-core CPU are in docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-full}"
PY="${PYTHON:-python}"
# Under CPU contention, OpenMP threads that spin while waiting cost more than they
# save; passive waiting keeps the 2-thread run close to its unloaded speed.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

if [ "$CONFIG" = "scenes" ]; then
  # The scenes models: the judge, the scenes denoiser, its deliberately weaker twin (autoguidance)
  # and the noise-robust scene classifier. Set TORCHRUN="torchrun --nproc-per-node 8" to train
  # data-parallel (DDP) on several GPUs or CPU processes; nothing else changes.
  RUN="${TORCHRUN:-$PY}"
  "$PY" -m tutorial_lib.train judge            --config scenes      --out runs/judge-scenes --resume
  $RUN -m tutorial_lib.train denoiser          --config scenes      --out runs/denoiser-scenes --resume
  $RUN -m tutorial_lib.train denoiser          --config scenes-weak --out runs/denoiser-scenes-weak --resume
  "$PY" -m tutorial_lib.train noisy_classifier --config scenes      --out runs/noisy_classifier-scenes --resume
  exit 0
fi
"$PY" -m tutorial_lib.train judge            --config "$CONFIG" --out "runs/judge-$CONFIG" --resume
"$PY" -m tutorial_lib.train noisy_classifier --config "$CONFIG" --out "runs/noisy_classifier-$CONFIG" --resume
"$PY" -m tutorial_lib.train denoiser         --config "$CONFIG" --out "runs/denoiser-$CONFIG" --resume

if [ "${EXPORT:-0}" = "1" ]; then
  "$PY" -m tutorial_lib.pretrained export \
    --denoiser "runs/denoiser-$CONFIG/final" \
    --judge "runs/judge-$CONFIG/final" \
    --noisy-classifier "runs/noisy_classifier-$CONFIG/final"
  "$PY" -m tutorial_lib.pretrained verify
fi
