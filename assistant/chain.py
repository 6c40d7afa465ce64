"""The answer chain: rewrite → retrieve → generate → verify, as LangChain runnables.

`Assistant.ask()` returns one `Answer`; `Assistant.stream()` yields text chunks as they are generated,
then the complete verified `Answer`. The chunks are the generator's raw text (markers numbered as the
passages were); show the final `Answer.text` once it arrives: verification may renumber markers, leave
out unsupported sentences and put a "the sources disagree" sentence first. Neither raises for a bad question or a failing model: the answer
carries a readable `error` instead (never a stack trace, never a secret).
"""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import assistant.lazy  # noqa: F401 — before LangChain: defers what a question does not use (see lazy.py)
from langchain_core.runnables import RunnableLambda

from assistant.citations import (is_framing, neutral_passages, neutralise_markers, renumber, restore_quotes,
                                 strip_markers, verify)
from assistant.config import Settings
from assistant.conflicts import SentenceRef, find_conflicts, relevant, stated, statement
from assistant.generation import DECLINE, OFF_TASK, Generation, GenerationError, GenerationRequest, get_generator
from assistant.generation.questions import is_off_task
from assistant.sentences import sentence_spans
from assistant.language import detect_language
from assistant.models import Answer, Citation, ScoredPassage, Turn
from assistant.rewrite import keep_rewrite, rewrite, surely_follow_up


class AssistantError(RuntimeError):
    """A problem the user should read about; its message is safe to show."""


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


class Assistant:
    def __init__(self, settings: Settings, kb: str | None = None):
        self.settings = settings
        self.kb = kb or settings.kb
        self._generator = None
        self._retriever = None
        self._warm = False
        self._prepare = (
            RunnableLambda(self._validate, name="validate")
            | RunnableLambda(self._rewrite, name="rewrite")
            | RunnableLambda(self._retrieve, name="retrieve")
        )
        self._finish = RunnableLambda(self._generate, name="generate") | RunnableLambda(self._verify, name="verify")
        self.chain = self._prepare | self._finish

    # --- properties the UI and the CLI show
    @property
    def generator_name(self) -> str:
        return self.settings.resolved_generator

    @property
    def model_name(self) -> str:
        if self.generator_name == "openai":
            return self.settings.llm_model
        return f"extractive/{self.settings.embeddings}"

    @property
    def llm_configured(self) -> bool:
        return self.settings.llm_configured

    @property
    def generator(self):
        if self._generator is None:
            self._generator = get_generator(self.settings)
        return self._generator

    @property
    def retriever(self):
        if self._retriever is None:
            from assistant.retrieval import open_retriever

            self._retriever = open_retriever(self.settings, self.kb)
        return self._retriever

    def warm_up(self) -> bool:
        """Load what the first question needs (the index, the BM25 index, the embedding model) by
        running one search, without generating anything. For the UI to call while the user types.
        Returns False when the knowledge base cannot be searched (the question will say why)."""
        if self._warm:
            return True
        try:
            self.retriever.search("warm-up", k=1)
        except Exception:
            return False
        self._warm = True
        return True

    # --- public API
    def ask(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        state = self._start(question, history)
        try:
            return self.chain.invoke(state)
        except Exception as exc:  # noqa: BLE001 — the contract: never raise for user or model problems
            return self._failed(state, exc)

    def stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[str | Answer]:
        state = self._start(question, history)
        try:
            state = self._prepare.invoke(state)
            if "answer" not in state:
                t0 = time.perf_counter()
                final = None
                for item in self.generator.stream(self._request(state)):
                    if isinstance(item, Generation):
                        final = item
                    elif item:
                        yield item
                state["timings"]["generate"] = _ms(t0)
                if final is None:
                    raise GenerationError("the model returned no answer")
                state["generation"] = final
            answer = self._verify(state)
        except Exception as exc:  # noqa: BLE001
            answer = self._failed(state, exc)
        if not answer.error and answer.text and "answer" in state:
            yield answer.text
        yield answer

    # --- steps (each takes and returns the state dict; a step that settles the answer sets "answer")
    def _start(self, question: Any, history: Sequence[Turn]) -> dict:
        question = "" if question is None else str(question)
        lang = detect_language(question)
        return {"question": question, "history": list(history or ()), "lang": lang, "timings": {}, "t0": time.perf_counter(),
                "llm_left": self.settings.llm_timeout}  # seconds of LLM calls left for this question, retries included

    def _answer(self, state: dict, **fields) -> Answer:
        timings = dict(state["timings"])
        timings["total"] = _ms(state["t0"])
        return Answer(
            question=state["question"],
            standalone_question=state.get("standalone", state["question"]),
            passages=state.get("passages", []),
            timings=timings,
            generator=self.generator_name,
            model=self.model_name,
            kb=self.kb,
            **fields,
        )

    def _validate(self, state: dict) -> dict:
        q = state["question"].strip()
        limit = self.settings.max_question_chars
        if not q:
            state["answer"] = self._answer(state, error="The question is empty: please type a question.",
                                           error_kind="invalid")
        elif len(q) > limit:
            state["answer"] = self._answer(
                state,
                error=f"The question is too long ({len(q):,} characters; the limit is {limit:,}). "
                "Please shorten it.",
                error_kind="too_long",
            )
        elif is_off_task(q):
            state["answer"] = self._answer(state, text=OFF_TASK[state["lang"]], declined=True)
        return state

    def _rewrite(self, state: dict) -> dict:
        if "answer" in state:
            return state
        t0 = time.perf_counter()
        llm = getattr(self.generator, "llm", None) if state["history"] else None
        started = time.monotonic()
        state["standalone"] = rewrite(state["question"], state["history"], llm=llm, deadline=started + state["llm_left"])
        if llm is not None:  # the rewrite spends the question's LLM budget
            state["llm_left"] -= time.monotonic() - started
        state["timings"]["rewrite"] = _ms(t0)
        return state

    def _retrieve(self, state: dict) -> dict:
        if "answer" in state:
            return state
        from assistant.embeddings import get_embedder

        t0 = time.perf_counter()
        retriever, embedder = self.retriever, get_embedder(self.settings)
        k = max(self.settings.top_k, self.settings.answer_passages)
        asked, standalone = state["question"].strip(), state["standalone"]
        queries = [standalone] if standalone == asked else [standalone, asked]
        vectors = [embedder.embed_query(q) for q in queries]
        state["timings"]["embed"] = _ms(t0)
        t1 = time.perf_counter()
        found: list[list[ScoredPassage]] = [retriever.search(q, k=k, query_vector=v) for q, v in zip(queries, vectors)]
        passages, vector = found[0], vectors[0]
        if len(found) == 2:
            # the rewrite is a guess: it answers only if its passages support the question's own words at least
            # as well as those of the question as asked, and then it loses none of them
            top = self.settings.top_k
            if keep_rewrite(asked, [p.text for p in found[1][:top]], [p.text for p in found[0][:top]],
                            sure=surely_follow_up(asked)):
                seen = {p.chunk_id for p in found[0]}
                merged = found[0] + [p for p in found[1] if p.chunk_id not in seen]
                passages = [p.model_copy(update={"rank": i}) for i, p in enumerate(merged, start=1)]
            else:
                state["standalone"], passages, vector = asked, found[1], vectors[1]
        state["documents"] = {s: t for s in {p.source for p in passages} if (t := retriever.document_text(s)) is not None}
        state["timings"]["retrieve"] = _ms(t1)
        state["passages"], state["vector"] = passages, vector
        # what the generators see: a document's own "[1]" is document text, never a citation marker
        state["neutral_passages"] = neutral_passages(passages)
        state["neutral_documents"] = {s: neutralise_markers(t) for s, t in state["documents"].items()}
        return state

    def _request(self, state: dict) -> GenerationRequest:
        return GenerationRequest(
            question=state["question"].strip(),
            standalone=state["standalone"],
            passages=state["neutral_passages"],
            lang=state["lang"],
            history=state["history"],
            query_vector=state.get("vector"),
            documents=state["neutral_documents"],
            deadline=time.monotonic() + max(state.get("llm_left", self.settings.llm_timeout), 0.0),
            kb=self.kb,
        )

    def _generate(self, state: dict) -> dict:
        if "answer" in state:
            return state
        t0 = time.perf_counter()
        if not state["passages"]:
            state["generation"] = Generation(text=DECLINE[state["lang"]], declined=True)
        else:
            state["generation"] = self.generator.generate(self._request(state))
        state["timings"]["generate"] = _ms(t0)
        return state

    def _verify(self, state: dict) -> Answer:
        if "answer" in state:
            return state["answer"]
        t0 = time.perf_counter()
        gen: Generation = state["generation"]
        passages, documents, lang = state["passages"], state.get("documents", {}), state["lang"]
        neutral = state["neutral_passages"]
        if gen.used is not None:  # markers may only point at passages the model saw
            passages, neutral = passages[: gen.used], neutral[: gen.used]
        if gen.declined:
            text = gen.text.strip() or DECLINE[lang]
            state["timings"]["verify"] = _ms(t0)
            return self._answer(state, text=strip_markers(text), declined=True, unsupported_sentences=list(gen.dropped))
        checked = verify(gen.text, neutral, self.settings.support_threshold, state["neutral_documents"])
        checked.unsupported_sentences[:0] = gen.dropped  # sentences the generator already found unsupported
        text, citations = checked.text, restore_quotes(checked.citations, passages)
        if not citations and all(is_framing(line) for line in text.splitlines() if line.strip()):
            # nothing the sources support is left: say so rather than show an empty or unverified answer
            state["timings"]["verify"] = _ms(t0)
            return self._answer(state, text=DECLINE[lang], declined=True,
                                unsupported_sentences=checked.unsupported_sentences,
                                removed_markers=checked.removed_markers)

        conflicts = [c for c in find_conflicts(_sentence_refs(citations, passages)) if relevant(c, state["standalone"])]
        for conflict in conflicts:
            for value in conflict.values:
                if value.citation is None:
                    value.citation = _add_citation(citations, passages, documents, value.quote, value.source)
            if not stated(conflict, text):
                text = statement(conflict, lang) + "\n" + text
        text, citations = renumber(text, citations)
        for conflict in conflicts:
            for value in conflict.values:
                match = next((c for c in citations if c.source == value.source and c.quote == value.quote), None)
                value.citation = match.number if match else None
        state["timings"]["verify"] = _ms(t0)
        return self._answer(
            state,
            text=text,
            citations=citations,
            conflicts=conflicts,
            unsupported_sentences=checked.unsupported_sentences,
            removed_markers=checked.removed_markers,
        )

    def _failed(self, state: dict, exc: Exception) -> Answer:
        return self._answer(state, error=safe_message(exc, self.settings), error_kind=error_kind(exc))


def _sentence_refs(citations: Sequence[Citation], passages: Sequence[ScoredPassage]) -> list[SentenceRef]:
    refs = [SentenceRef(c.quote, c.source, c.number) for c in citations]
    for p in passages:
        refs.extend(SentenceRef(p.text[s:e], p.source) for s, e in sentence_spans(p.text))
    return refs


def _add_citation(citations: list[Citation], passages, documents, quote: str, source: str) -> int | None:
    """A citation for a quote found in a retrieved passage (a conflicting figure the answer left out)."""
    for c in citations:
        if c.source == source and c.quote == quote:
            return c.number
    for p in passages:
        at = p.text.find(quote)
        if p.source == source and at >= 0:
            number = max((c.number for c in citations), default=0) + 1
            start = p.start + at
            citations.append(
                Citation(number=number, source=p.source, title=p.title, chunk_id=p.chunk_id, quote=quote,
                         start=start, end=start + len(quote), passage_start=p.start, passage_end=p.end,
                         passage_text=p.text)
            )
            return number
    return None


def error_kind(exc: Exception) -> str:
    """The `Answer.error_kind` of a failure: a missing knowledge base, a store or model that cannot be
    reached, or anything else."""
    from assistant.store import KnowledgeBaseMissing, StoreError

    if isinstance(exc, KnowledgeBaseMissing):
        return "not_found"
    if isinstance(exc, (StoreError, GenerationError)):
        return "unavailable"
    return "internal"


def safe_message(exc: Exception, settings: Settings) -> str:
    """A one-line message for the user, with any secret masked."""
    if isinstance(exc, (AssistantError, GenerationError)):
        message = str(exc)
    else:
        from assistant.store import StoreError

        message = str(exc) if isinstance(exc, StoreError) else f"Internal error ({type(exc).__name__}): {exc}"
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    if key:
        message = message.replace(key, "********")
    return message.splitlines()[0][:500] if message else type(exc).__name__
