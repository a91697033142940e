#!/usr/bin/env bash
# Stop the single-node SLURM started by slurm-up.sh.
pkill -x slurmd || true
pkill -x slurmctld || true
pkill -x munged || true
