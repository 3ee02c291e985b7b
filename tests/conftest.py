"""Test-session settings shared by every test file."""

import os

import matplotlib
import torch

# Headless figures in the package tests (not via MPLBACKEND: notebook kernels would inherit it).
matplotlib.use("Agg")

# The package tests use tiny tensors: one intra-op thread is as fast and avoids
# oversubscribing small CI machines (and notebooks or training running beside them).
torch.set_num_threads(int(os.environ.get("COURSE_TEST_THREADS", "1")))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
