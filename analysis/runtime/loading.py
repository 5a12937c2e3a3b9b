"""Load a model once, read-only, with eager attention so that attention patterns are returned.

GGUF checkpoints are dequantized on first load (~20 s for SmolLM2) and cached as safetensors in
``ATLAS_CACHE_DIR`` (default ``~/.cache/attention-atlas``), so later starts take about two seconds.
Never passes ``trust_remote_code``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from analysis.runtime.architecture import find_parts, is_causal_config, text_config
from analysis.runtime.attention import ATTENTION_NAME
from analysis.runtime.handle import ModelHandle, ModelInfo, Tokenizer
from analysis.runtime.hub import unreachable_hub_message
from analysis.runtime.models import EMBEDDED_MODELS, ModelLoadError, ModelSource, resolve_model

CACHE_FORMAT = 1


def cache_root() -> Path:
    """The folder holding dequantized model copies."""
    return Path(os.environ.get("ATLAS_CACHE_DIR", Path.home() / ".cache" / "attention-atlas"))


def file_fingerprint(path: Path) -> str:
    """A short content hash of a file (used as the model revision and the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """A short hash of a model folder: its config plus the names and sizes of its weight files."""
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def pick_device(device: str | None) -> str:
    """CUDA when present, CPU otherwise, unless a device is named."""
    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _write_dequantized_copy(model, tokenizer, target: Path) -> None:
    """Save a GGUF-loaded model as plain safetensors (GGUF models refuse ``save_pretrained``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        state = model.state_dict()
        if getattr(config, "tie_word_embeddings", False):
            state = {k: v for k, v in state.items() if k != "lm_head.weight"}
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"))
        (staging / "atlas-cache.json").write_text(json.dumps({"format": CACHE_FORMAT}))
        try:
            staging.rename(target)
        except OSError:  # another process won the race: its copy is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _load_weights(source: ModelSource, causal: bool, device: str):
    """Return (tokenizer, model, revision, loaded_from_cache); ``causal`` picks the causal-LM or encoder class."""
    common = {"attn_implementation": "eager", "dtype": torch.float32}
    if device == "cuda":
        common["device_map"] = "auto"
    offline = {"local_files_only": not source.is_hub}
    if source.gguf_file:
        gguf_path = Path(source.location) / source.gguf_file
        revision = file_fingerprint(gguf_path)
        cached = cache_root() / f"{Path(source.gguf_file).stem}-{revision}-v{CACHE_FORMAT}"
        if (cached / "atlas-cache.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(cached, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True, **common)
            return tokenizer, model, revision, True
        tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file, **common)
        _write_dequantized_copy(model, tokenizer, cached)
        return tokenizer, model, revision, False
    config = AutoConfig.from_pretrained(source.location, **offline)
    revision = folder_fingerprint(Path(source.location)) if not source.is_hub else getattr(
        config, "_commit_hash", None) or "hub"
    tokenizer = AutoTokenizer.from_pretrained(source.location, **offline)
    loader = AutoModelForCausalLM if causal else AutoModel
    model = loader.from_pretrained(source.location, **offline, **common)
    return tokenizer, model, revision, False


def load_model(name_or_path: str, device: str | None = None) -> ModelHandle:
    """Load a model by embedded name, local folder or hub id; raises ModelLoadError with a clear message."""
    source = resolve_model(name_or_path)
    problem = unreachable_hub_message(source.location) if source.is_hub else None
    if problem:
        raise ModelLoadError(problem)
    embedded = EMBEDDED_MODELS.get(source.name)
    device = pick_device(device)
    try:
        causal = embedded.causal if embedded else _folder_is_causal(source)
        tokenizer, model, revision, _ = _load_weights(source, causal, device)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as error:
        hint = " (this machine may be offline: only embedded models and local folders load)" if source.is_hub else ""
        raise ModelLoadError(f"Could not load model '{name_or_path}'{hint}: {error}".strip()) from error
    if device != "cuda":
        model.to(device)
    return make_handle(source.name, model, tokenizer, revision, str(device), causal)


def _folder_is_causal(source: ModelSource) -> bool:
    """GGUF checkpoints are causal LMs; other folders and hub ids by their config (``is_causal_config``)."""
    if source.gguf_file:
        return True
    return is_causal_config(text_config(AutoConfig.from_pretrained(source.location,
                                                                   local_files_only=not source.is_hub)))


def make_handle(name: str, model: torch.nn.Module, tokenizer: Tokenizer, revision: str, device: str,
                causal: bool | None = None) -> ModelHandle:
    """Freeze a loaded model, switch it to the Atlas attention function, find its parts and describe it.

    ``causal`` is the loader's decision (None: ``is_causal_config`` of the model's config); it is made once,
    here, and every capability is read from the parts found with it."""
    model.eval()
    model.requires_grad_(False)
    try:
        model.set_attn_implementation(ATTENTION_NAME)
    except (ValueError, AttributeError):  # an architecture without the attention interface: view only
        pass
    config = text_config(model.config)
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    parts = find_parts(model, is_causal_config(config) if causal is None else causal, n_heads, head_dim)
    specials = {
        role: token_id
        for role in ("bos", "eos", "cls", "sep", "pad", "mask")
        if (token_id := getattr(tokenizer, f"{role}_token_id", None)) is not None
    }
    info = ModelInfo(
        name=name,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        family=getattr(config, "model_type", "other"),
        n_layers=config.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=getattr(config, "num_key_value_heads", None) or n_heads,
        head_dim=head_dim,
        d_model=config.hidden_size,
        vocab_size=config.vocab_size,
        n_params=sum(p.numel() for p in model.parameters()),
        device=device,
        revision=revision,
        parts=parts,
        special_token_ids=specials,
    )
    return ModelHandle(info, tokenizer, model, parts)
