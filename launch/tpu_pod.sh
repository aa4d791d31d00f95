#!/usr/bin/env bash
# Meta-train LPG on a Cloud TPU pod slice: every host runs the same command (--worker=all), the
# population's lifetimes are sharded over all chips of all hosts, checkpoints and logs go to a
# GCS bucket mounted at the same path on every host with gcsfuse (the launcher writes its workdir
# with ordinary file I/O; only process 0 writes logs, each process writes its own checkpoint
# shards). Re-running the `train` step resumes from the latest checkpoint.
#
#   TPU_NAME=lpg-v4-64 ZONE=us-central2-b ACCELERATOR=v4-64 BUCKET=my-bucket RUN=paper1 \
#       bash launch/tpu_pod.sh create|setup|train|status|stop|delete
#
# The paper preset has 64 lifetimes per task: it needs 64 % (number of chips) == 0, e.g. up to
# 64 chips; for 128 / 256 chips pass --config.meta.lifetimes_per_task=128 / 256 (EXTRA_FLAGS).
# Requires: gcloud with a project set, TPU quota in ZONE, a GCS bucket. Not run by CI (no TPU).
set -euo pipefail

TPU_NAME=${TPU_NAME:?set TPU_NAME}
ZONE=${ZONE:?set ZONE}
ACCELERATOR=${ACCELERATOR:-v4-64}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
BUCKET=${BUCKET:?set BUCKET, a GCS bucket name (mounted at ~/shared on every host)}
RUN=${RUN:-lpg}
WORKDIR="~/shared/$RUN"
CONFIG=${CONFIG:-experiments/configs/lpg.py:paper}
REPO_URL=${REPO_URL:-https://github.com/lpg-framework/lpg.git}
BRANCH=${BRANCH:-main}
EXTRA_FLAGS=${EXTRA_FLAGS:-}

on_all_hosts() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$1"
}

case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" \
      --accelerator-type "$ACCELERATOR" --version "$RUNTIME"
    ;;
  setup)  # same checkout, environment and shared mount on every host; jax[tpu] brings libtpu
    on_all_hosts "set -e; if ! command -v gcsfuse >/dev/null; then \
        echo deb https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main \
          | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; \
        curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - >/dev/null; \
        sudo apt-get -qq update && sudo apt-get -qq install -y gcsfuse; fi; \
      mkdir -p ~/shared && (mountpoint -q ~/shared || gcsfuse --implicit-dirs $BUCKET ~/shared)"
    on_all_hosts "set -e; rm -rf ~/lpg && git clone -q --branch $BRANCH $REPO_URL ~/lpg && cd ~/lpg \
      && python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' 'jax[tpu]==0.10.2' gcsfs"
    ;;
  train)  # jax.distributed.initialize() auto-detects the coordinator on TPU VMs (--multihost)
    on_all_hosts "cd ~/lpg && nohup .venv/bin/python -m launch.train --multihost \
      --config $CONFIG --workdir $WORKDIR $EXTRA_FLAGS > ~/lpg/train.log 2>&1 &"
    ;;
  status)  # process 0's progress bar and every host's last lines
    on_all_hosts "tail -n 3 ~/lpg/train.log"
    ;;
  stop)  # SIGTERM: every process checkpoints after the current meta-step and exits
    on_all_hosts "pkill -TERM -f launch.train || true"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" --quiet
    ;;
  *)
    echo "usage: $0 create|setup|train|status|stop|delete  (see the header for the variables)" >&2
    exit 2
    ;;
esac
