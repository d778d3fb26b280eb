#!/usr/bin/env bash
# Start the same training command on every worker of a TPU VM pod (see docs/TRAINING.md).
#   TPU_NAME=my-pod ZONE=us-central2-b ./launch_tpu.sh --gin_file=gin/runs/train.gin \
#     --gin_file=gin/models/base.gin --gin.MIXTURE_OR_TASK_NAME="'p5_beauty_all'" \
#     --gin.MODEL_DIR="'gs://bucket/p5-base'" --gin.TRAIN_STEPS=20000
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_DIR="${REPO_DIR:-~/p5-jax}"
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  --command="cd ${REPO_DIR} && source .venv/bin/activate && python -m p5_jax.train${ARGS}"
