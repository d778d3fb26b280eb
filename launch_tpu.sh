#!/usr/bin/env bash
# Start the same command on every worker of a TPU VM pod (see docs/TRAINING.md): training, or
# with ENTRY=eval the evaluation (each worker decodes its share of the batches).
#   TPU_NAME=my-pod ZONE=us-central2-b ./launch_tpu.sh --gin_file=gin/runs/train.gin \
#     --gin_file=gin/models/base.gin --gin.MIXTURE_OR_TASK_NAME="'p5_beauty_all'" \
#     --gin.MODEL_DIR="'gs://bucket/p5-base'" --gin.TRAIN_STEPS=20000
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
REPO_DIR="${REPO_DIR:-~/p5-jax}"
ENTRY="${ENTRY:-train}"
case "${ENTRY}" in train|eval) ;; *) echo "ENTRY must be train or eval" >&2; exit 2 ;; esac
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  --command="cd ${REPO_DIR} && source .venv/bin/activate && python -m p5_jax.${ENTRY}${ARGS}"
