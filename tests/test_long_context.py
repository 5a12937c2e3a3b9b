"""Long-context head types on tiny models: the generation's attention rows equal the library's own patterns at
every step, lookback ratios follow their definition, and the retrieval score is 1 for a head that always looks
at the copied needle token and 0 for one that never does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.datasets.haystack import NEEDLES, haystack_prompt
from analysis.methods.ablation import greedy_generate
from analysis.methods.generation_attention import generation_rows
from analysis.methods.lookback import generation_lookback, lookback_ratios, lookback_table
from analysis.methods.retrieval import copy_hits, retrieval_sweep
from analysis.runtime.loading import make_handle
from tests.family_models import FAMILIES, build_family

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request):
    """A tiny family model with its plain-library forward (taken through the same module, no Atlas record)."""
    family = next(f for f in FAMILIES if f.name == request.param)
    model, tokenizer = build_family(family)
    return make_handle(family.name, model, tokenizer, "random", "cpu")


def _library_rows(handle, prompt: torch.Tensor, generated: list[int]) -> np.ndarray:
    """Oracle: for each step, a plain forward on prompt + the tokens generated so far, its last pattern row."""
    rows = []
    for step in range(len(generated)):
        ids = torch.cat([prompt, torch.tensor([generated[:step]], dtype=prompt.dtype)], dim=1)
        with torch.inference_mode():
            attentions = handle.model(ids, use_cache=False, output_attentions=True).attentions
        width = prompt.shape[1] + len(generated) - 1
        rows.append([torch.nn.functional.pad(a[0, :, -1], (0, width - ids.shape[1])).numpy() for a in attentions])
    return np.stack(rows).transpose(1, 2, 0, 3)  # [layers, heads, steps, keys]


def test_generation_rows_equal_the_library_patterns_of_every_step(tiny):
    prompt = tiny.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    generated = greedy_generate(tiny, prompt, [], 5)
    rows = generation_rows(tiny, prompt, generated)
    np.testing.assert_allclose(rows, _library_rows(tiny, prompt, generated), atol=1e-5)


def test_lookback_ratios_follow_the_definition(tiny):
    prompt = tiny.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    generated, ratios = generation_lookback(tiny, prompt, 5)
    rows = _library_rows(tiny, prompt, generated)
    n = prompt.shape[1]
    assert ratios.shape == (2, 4, 5) and bool(((ratios >= 0) & (ratios <= 1)).all())
    for layer, head, step in [(0, 0, 0), (0, 3, 2), (1, 1, 4)]:
        row = rows[layer, head, step]
        expected = 1.0 if step == 0 else row[:n].mean() / (row[:n].mean() + row[n:n + step].mean())
        assert ratios[layer, head, step] == pytest.approx(expected, abs=1e-5)
    assert not np.allclose(ratios[..., 1:], 1.0)  # the check can fail: generated tokens do get attention
    table = lookback_table(ratios, ["a", "b", "c", "d", "e"])
    assert list(table.columns[:4]) == ["head", "layer", "head_index", "mean"] and len(table) == 8


def test_retrieval_score_is_one_for_a_copying_head_and_zero_for_one_that_never_copies():
    ids = [5, 6, 10, 11, 12, 7, 8]  # the needle is positions 2-4 (tokens 10, 11, 12)
    generated = [11, 12, 9]  # two copying steps, then a token outside the needle
    steps, keys = len(generated), len(ids) + len(generated)
    rows = np.full((1, 3, steps, keys), 0.01, dtype=np.float32)
    for step, token in enumerate(generated):
        rows[0, 0, step, ids.index(token) if token in ids else 0] = 1.0  # copies: top-1 on the same needle token
        rows[0, 1, step, 0] = 1.0  # never: always the first token
        rows[0, 2, step, 2] = 1.0  # inside the needle but the wrong token (10 while copying 11, 12)
    hits, copying = copy_hits(rows, ids, (2, 5), generated)
    assert copying == 2
    np.testing.assert_allclose(hits[0] / copying, [1.0, 0.0, 0.0])


def test_haystack_prompt_places_the_needle_at_its_depth(tiny):
    needle = NEEDLES[0]
    shallow, deep = (haystack_prompt(tiny.tokenizer, needle, 400, depth) for depth in (0.0, 1.0))
    encode = tiny.tokenizer.encode
    for prompt in (shallow, deep):
        start, stop = prompt.needle_span
        assert prompt.ids[start:stop] in (encode(needle.fact), encode(" " + needle.fact))
        question = encode(f"\n\nQuestion: {needle.question}\nAnswer: {needle.answer_prefix}")
        assert prompt.ids[-len(question):] == question
        assert 300 <= len(prompt.ids) - (stop - start) - len(question) <= 400  # the haystack's own tokens
    assert shallow.needle_span[0] < deep.needle_span[0]
    with pytest.raises(ValueError, match="Depth"):
        haystack_prompt(tiny.tokenizer, needle, 100, 1.5)


def test_retrieval_sweep_scores_every_head_in_zero_one(tiny):
    progress = []
    result = retrieval_sweep(tiny, lengths=(60,), depths=(0.5,), needles=NEEDLES[:1], n_tokens=3,
                             on_progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 1)] and len(result.trials) == 1
    scores = result.scores["retrieval"]
    assert len(scores) == 8 and bool((scores.isna() | ((scores >= 0) & (scores <= 1))).all())


def _streaming_run(handle, ids, edit, weights: bool):
    """Logits and (if ``weights``) every layer's pattern of a run with the streaming edit; without weights the
    layers run the fused attention."""
    from analysis.runtime.forward import run_with_cache
    from analysis.runtime.interventions import Edits

    patterns = {}
    cache = run_with_cache(handle, ids, edits=Edits(streaming=edit),
                           on_pattern=(lambda layer, w: patterns.__setitem__(layer, w.clone())) if weights else None)
    return cache.logits, patterns


def test_a_window_covering_the_text_is_the_clean_run(tiny):
    from analysis.runtime.forward import run_with_cache
    from analysis.runtime.interventions import streaming_edit

    ids = tiny.tokenizer("the cat sat on the mat, the dog sat", return_tensors="pt").input_ids
    clean = run_with_cache(tiny, ids).logits
    every_head = [[(layer, head) for layer in range(2) for head in range(4)]]
    whole = streaming_edit(every_head, 2, 4, sink=1, window=ids.shape[1])
    for weights in (False, True):
        torch.testing.assert_close(_streaming_run(tiny, ids, whole, weights)[0], clean, atol=1e-5, rtol=0)
    short = streaming_edit(every_head, 2, 4, sink=1, window=3)
    assert (_streaming_run(tiny, ids, short, False)[0] - clean).abs().max() > 1e-3  # the check can fail


def test_no_window_and_one_sink_token_attends_only_to_the_first_token(tiny):
    from analysis.runtime.interventions import streaming_edit

    ids = tiny.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    edit = streaming_edit([[(1, 2)], []], 2, 4, sink=1, window=0)  # row 0 restricts L1H2, row 1 is clean
    logits, patterns = _streaming_run(tiny, ids.expand(2, -1), edit, True)
    restricted, clean = patterns[1][0], patterns[1][1]
    torch.testing.assert_close(restricted[2], torch.zeros_like(restricted[2]).index_fill_(-1, torch.tensor([0]), 1.0))
    torch.testing.assert_close(restricted[[0, 1, 3]], clean[[0, 1, 3]])  # the other heads are untouched
    torch.testing.assert_close(patterns[0][0], patterns[0][1])
    fused, _ = _streaming_run(tiny, ids.expand(2, -1), edit, False)
    torch.testing.assert_close(fused, logits, atol=1e-5, rtol=0)  # the fused path honours the per-head mask
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_streaming_scores_equal_one_restricted_run_per_head(tiny):
    from analysis.methods.metrics import token_loss
    from analysis.methods.streaming import kv_cache_bytes, restrict_heads, streaming_scores
    from analysis.runtime.forward import run_with_cache
    from analysis.runtime.interventions import Edits, streaming_edit

    ids = tiny.tokenizer("the cat sat on the mat, the dog sat on the log.", return_tensors="pt").input_ids
    progress = []
    scores = streaming_scores(tiny, ids, sink=1, window=4, on_progress=lambda done, total: progress.append(done))
    assert progress == [1, 2] and len(scores) == 8
    clean = token_loss(run_with_cache(tiny, ids).logits, ids).mean()
    for layer, head in [(1, 0), (1, 3)]:  # oracle: a full forward restricting that head alone (layer 1 sees all keys)
        edit = streaming_edit([[(layer, head)]], 2, 4, sink=1, window=4)
        alone = token_loss(run_with_cache(tiny, ids, edits=Edits(streaming=edit)).logits, ids).mean() - clean
        row = scores[(scores["layer"] == layer) & (scores["head_index"] == head)].iloc[0]
        assert row["delta_loss"] == pytest.approx(float(alone), abs=1e-5)
        assert row["hidden_change"] > 0
        assert restrict_heads(tiny, ids, [(layer, head)], sink=1, window=4) == pytest.approx(float(alone), abs=1e-5)
    total, saved = kv_cache_bytes(tiny.info, [(0, 0), (0, 1), (1, 2)], 100, sink=4, window=16)
    group = tiny.info.n_heads // tiny.info.n_kv_heads  # 2 query heads per KV head: only layer 0's KV head 0 shrinks
    assert group == 2 and saved == (100 - 20) * 2 * tiny.info.head_dim * 2
    assert total == 2 * tiny.info.n_kv_heads * 100 * 2 * tiny.info.head_dim * 2
