#!/usr/bin/env bash
# Start the same command on every worker of a TPU VM pod (see docs/TRAINING.md): training (every
# worker builds the same global batch and feeds its own devices' rows of it, so a checkpoint
# resumes on any number of workers), or with ENTRY=eval the evaluation (each worker decodes its
# share of the batches; worker 0 writes the results). JAX connects the workers itself.
#   TPU_NAME=my-pod ZONE=us-central2-b ./launch_tpu.sh --gin_file=gin/runs/train.gin \
#     --gin_file=gin/models/base.gin --gin.MIXTURE_OR_TASK_NAME="'p5_beauty_all'" \
#     --gin.MODEL_DIR="'gs://bucket/p5-base'" --gin.TRAIN_STEPS=20000
set -euo pipefail
for name in TPU_NAME ZONE; do
  [[ -n "${!name:-}" ]] || { echo "error: set ${name} (see docs/TRAINING.md)" >&2; exit 2; }
done
REPO_DIR="${REPO_DIR:-~/p5-jax}"
ENTRY="${ENTRY:-train}"
case "${ENTRY}" in train|eval) ;;
  *) echo "error: ENTRY must be train or eval, got '${ENTRY}'" >&2; exit 2 ;; esac
ARGS=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "${TPU_NAME}" --zone="${ZONE}" --worker=all \
  --command="cd ${REPO_DIR} && source .venv/bin/activate && python -m p5_jax.${ENTRY}${ARGS}"
