"""Helpers shared by the job tests: a tiny model folder a worker can load, running a job, comparing results."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from analysis.datasets.generators import IOI_TEMPLATES, NAMES, OBJECTS, PLACES
from analysis.jobs.kinds import KINDS, compute_rows
from analysis.jobs.runner import JobRequest, JobRunner, wait_for
from analysis.runtime.loading import load_model
from tests.tiny_models import word_tokenizer

SWEEP_TIMEOUT = 120.0


def tiny_causal_folder(folder: Path) -> str:
    """A tiny random LLaMA saved with a word tokenizer that knows every IOI word: a model folder ``load_model``
    (and so a Dask worker) can open by path."""
    if not (folder / "config.json").is_file():
        words = {w.strip(".,").lower() for template in IOI_TEMPLATES for w in template.split() if "{" not in w}
        vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "cat", "sat", "on", "mat", "dog",
                      *sorted(words | {n.lower() for n in NAMES} | set(PLACES) | set(OBJECTS))]
        tokenizer = word_tokenizer(list(dict.fromkeys(vocabulary)))
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                             tie_word_embeddings=True, pad_token_id=0, initializer_range=0.1)
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def in_process(folder: str, request: JobRequest) -> tuple[pd.DataFrame, list]:
    """The same rows computed in this process on one thread, as the workers run torch (the fused attention kernel's
    sums depend on the thread count), rounded like stored results (float32)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frame, errors = compute_rows(load_model(folder), KINDS[request.kind],
                                     list(enumerate(request.dataset.rows())), request.options, request.max_tokens)
    finally:
        torch.set_num_threads(threads)
    return frame.astype({c: "float32" for c in frame.columns if frame[c].dtype == "float64"}), errors


def assert_same_result(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same rows, heads (or edges) and values (to float32 rounding: workers run torch on one thread, this process
    on more)."""
    assert list(stored.columns) == list(expected.columns)
    keys = [c for c in stored.columns if not pd.api.types.is_float_dtype(stored[c])]
    pd.testing.assert_frame_equal(stored[keys], expected[keys], check_dtype=False)
    values = [c for c in stored.columns if c not in keys]
    np.testing.assert_allclose(stored[values].to_numpy(np.float64), expected[values].to_numpy(np.float64),
                               rtol=1e-5, atol=1e-6)


def run_job(runner: JobRunner, request: JobRequest):
    record = wait_for(runner.jobs, runner.submit(request), SWEEP_TIMEOUT)
    assert record.status == "done", record.message
    return record


OPTIONS = {"census": {}, "gradient": {"metric": "logprob", "mode": "zero"}, "exact": {"metric": "kl", "mode": "mean"},
           "patching": {"metric": "logit_diff", "direction": "denoise"},
           "circuit": {"method": "eap-ig", "steps": 2, "metric": "logit_diff"},
           "knockout": {"selection": "L1H0,L0H2:stream:3"}}
