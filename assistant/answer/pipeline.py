"""The answer pipeline: named stages over one AnswerState, in the order run() reads them.

    guard → rewrite → retrieve → gate → generate → reask → retry → complete → settle → point → correct

generate streams the model's reply sentence by sentence; each sentence is checked (grounding), verified (by meaning)
and cited before it is shown. Each stage is a short function of the state and the Parts it uses (parts.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial

from ..index.corpus import Passage
from ..text import entity_words, find_entity
from .cite import Citation
from .correct import checked_correction
from .decision import signals
from .generation import bounded_context, render_context
from .grounding import Support, closest_sentence, fits_question
from .guard import asks_for_several, greeting_reply, is_greeting, is_off_task, needs_rewrite, off_task_reply
from .parts import Parts, model_failure
from .question_words import Unmatched
from .reply import clean_sentence, complete_sentences, is_decline, split_answer
from .rewrite import rewrite_question, with_last_question
from .state import NOT_IN_ARTICLE, Answer, AnswerState
from .verify import Verdict

log = logging.getLogger(__name__)


def run(state: AnswerState, parts: Parts) -> Iterator[str | Answer]:
    """Yield the answer's text as checked sentences become ready, then the Answer."""
    for stage in (guard, rewrite, retrieve, gate):
        stage(state, parts)
        if state.reason:
            break
    else:
        for streaming in (generate, reask, retry, complete):
            yield from streaming(state, parts)
        settle(state, parts)
        point(state, parts)
    if state.reason != "answered":
        yield state.text  # the refusal at once; a correction, when one passes, replaces it in the Answer
        correct(state, parts)
    yield state.answer()


# ----- before the model ---------------------------------------------------------------------------------------------
def guard(state: AnswerState, parts: Parts) -> None:
    """Answer a greeting, and turn down a request that is not a question about the text, without the model."""
    if is_greeting(state.question):
        state.end("greeting", greeting_reply(state.view.titles))
    elif is_off_task(state.question):
        state.end("off_task", off_task_reply(state.view.titles))


def rewrite(state: AnswerState, parts: Parts) -> None:
    """Make a follow-up question stand on its own, sharing the cached article prefix."""
    if not (state.turns and needs_rewrite(state.question, state.turns)):
        return
    variables = {"title": state.view.title, "context": state.view.context or ""}
    tokens = partial(parts.tokens, config=state.config)
    with state.timings.timed("rewrite"):  # timed only when it runs: reports give the p50 of real rewrites
        state.rewrite = rewrite_question(state.question, state.turns, variables, parts.prompts, tokens, parts.settings)
    if is_off_task(state.standalone):
        state.end("off_task", off_task_reply(state.view.titles))


def retrieve(state: AnswerState, parts: Parts) -> None:
    """Find the passages nearest the question, and how near they are."""
    with state.timings.timed("retrieve"):
        state.found = parts.search(state.standalone, state.view, config=state.config)


def gate(state: AnswerState, parts: Parts) -> None:
    """Refuse a question far from every passage; otherwise choose what the model reads.

    A word the article lacks is no reason to refuse (the user may name a place or a body in other words): only a
    question unrelated to every passage is refused here, and verification by meaning decides what an answer may say.
    """
    s, figures = parts.settings, state.found.gate
    if (
        s.retrieval.grounding_check
        and figures.best_distance > s.retrieval.max_distance
        and figures.lexical_overlap < s.retrieval.min_lexical_overlap
    ):
        log.info("Refused %r: best distance %.2f", state.standalone, figures.best_distance)
        state.end("not_in_article", NOT_IN_ARTICLE)
        return
    if state.view.system is not None and not parts.reader.ready(state.view):
        with state.timings.timed("read"):  # a short text is read now; a long one in the background meanwhile
            parts.reader.read(state.view, wait=False)
    if (whole := parts.reader.whole_view(state.view, state.found.passages, parts.views)) is not None:
        read(state, parts, whole.title, whole.context, retrieved_first(whole.passages, state.found.passages))
    else:
        passages = state.found.passages
        read(state, parts, "Articles", bounded_context(passages, state.standalone, s), passages)


def retrieved_first(passages: list[Passage], found: list[Passage]) -> list[Passage]:
    """The passages a sentence may cite, those retrieval found first, each group in article order.

    Of two paragraphs supporting a sentence alike, the earlier is cited (a news lede states the facts later
    paragraphs repeat; retrieval's own ranking cost the generalization set citation precision). But a Wikipedia
    lede that only names the answer is not where the question was answered: the paragraph retrieval found is.
    """
    near = {p.passage_id for p in found}
    return sorted(passages, key=lambda p: p.passage_id not in near)  # stable: article order within each group


def read(state: AnswerState, parts: Parts, title: str, context: str, candidates) -> None:
    """Set what the model reads and what its sentences may cite."""
    state.title, state.context, state.candidates = title, context, candidates
    state.system = parts.prompts.system.format(title=title, context=context)


# ----- the model, sentence by sentence ------------------------------------------------------------------------------
def generate(state: AnswerState, parts: Parts) -> Iterator[str]:
    """Stream the model's answer; after a rejected rewrite it reads the last exchange itself."""
    last_exchange = state.turns[-2:] if state.rewrite and state.rewrite.needs_history else []
    question = state.question if last_exchange else state.standalone
    with state.timings.timed("generate"):
        yield from sentences(state, parts, question, last_exchange)


def reask(state: AnswerState, parts: Parts) -> Iterator[str]:
    """When the answer to the model's rewrite of a follow-up found no support, let the model read the last exchange
    itself and answer the question as asked.

    A small model's rewrite can carry the answer into the question ("what is her job?" becomes "what is the job of
    the harbour master Anna Berg?"): its answer to that is muddled, and a right one adds nothing the word check
    accepts.
    So the word check now reads the question as asked (with the last one), and the judge still reads the rewrite.
    The names the rewrite gave "he" or "it" must still stand in the passage an answer cites, as if the answer said
    them: a near miss about someone else ("he" said what another person said) fails as it would have.
    """
    if not (state.rewrite and state.rewrite.source == "model") or state.declined or state.reply.kept:
        return
    if state.failed_verification:
        return  # the judge refused the answer to a clear question: asking again would only blur it
    with state.timings.timed("reask"):
        start_over(state)
        fallback = with_last_question(state.question, state.turns, parts.settings)
        state.rewrite = replace(fallback, judged=state.rewrite.question)
        yield from sentences(state, parts, state.question, state.turns[-2:])


def start_over(state: AnswerState) -> None:
    """Forget the draft's outcome before the model is asked again (the draft itself is kept, for reports)."""
    state.declined, state.draft = False, state.draft + "\n"
    state.reply.pending.clear()


def retry(state: AnswerState, parts: Parts) -> Iterator[str]:
    """A small model often reads a short context better: when it declined a question that retrieval matched
    closely, or every sentence it wrote named or counted what no passage holds (a year it made up, where the
    article says "the eighteenth century"), ask once more with only the best passages, and check and verify that
    answer like any other. Not after the judge turned an answer down: asking again would only blur it."""
    s = parts.settings
    if state.reply.kept or state.refused_early or state.found.best_distance > s.verification.retry_distance:
        return
    dropped = s.verification.retry_unsupported and state.draft.strip() and not state.failed_verification
    if not (state.declined or dropped):
        return
    with state.timings.timed("retry"):
        best = state.found.passages[: s.verification.retry_passages]
        read(state, parts, "Articles", render_context(best), best)
        start_over(state)
        yield from sentences(state, parts, state.standalone, [])


def complete(state: AnswerState, parts: Parts) -> Iterator[str]:
    """A small model tends to stop after the first of two asked-for things: ask it once for the rest."""
    if not parts.settings.retrieval.grounding_check or state.declined or len(state.reply.kept) != 1:
        return
    if not asks_for_several(state.standalone):
        return
    with state.timings.timed("complete"):
        state.generating_since = time.perf_counter()
        for sentence in the_rest(state, parts):
            yield from emit(state, parts, sentence)


def settle(state: AnswerState, parts: Parts) -> None:
    """Decide the outcome: the kept sentences as the answer, or a refusal that says why."""
    kept = state.reply.kept
    fits = not (parts.settings.retrieval.grounding_check and kept) or fits_question(state.standalone, state.reply.text)
    if not fits:
        log.info("Answer %r does not fit the question %r", kept, state.standalone)
    if state.declined or not kept or not fits:
        reason = "not_in_article" if state.declined else "unverified" if state.failed_verification else "unsupported"
        state.end(reason, NOT_IN_ARTICLE)
    else:
        state.end("answered", state.reply.text)


def point(state: AnswerState, parts: Parts) -> None:
    """With a refusal, quote the article's sentence nearest to what was asked, as data beside the refusal: a near
    miss then shows what the article does say, and a false refusal the passage that holds the answer.

    The sentence the judge turned down comes first (it is what the question nearly matched); otherwise the best
    retrieved passage's sentence sharing most words with the question. It is quoted verbatim, never rewritten.
    """
    s = parts.settings
    if state.reason not in ("not_in_article", "unsupported", "unverified") or not s.verification.point_to_closest:
        return
    nearest = state.turned_down  # it held the answer's words: near enough at any retrieval distance
    found = state.found
    if nearest is None and found and found.passages and found.best_distance <= s.verification.closest_max_distance:
        nearest = closest_sentence(
            found.passages[: s.verification.closest_passages], state.standalone, s.verification.closest_min_words
        )
    if nearest is not None:
        passage, start, end = nearest
        state.closest = Citation.of(passage, 1, start, end, parts.doc_text(passage.doc_id))


def correct(state: AnswerState, parts: Parts) -> None:
    """With a refusal that quotes a nearest sentence, say what the question took for granted and what that
    sentence says instead, in the model's words; shown only when its words and the judge pass it (see correct.py).

    By default only after the judge turned the model's answer down: a near miss, whose premise is worth correcting.
    After the other refusals the quote alone is shown, because a correction costs a generation (about 7 s on two
    cores) and on the SQuAD test articles half of all questions are refused; see BENCHMARKS.md.
    """
    s, checker = parts.settings, parts.fact_checker
    near_miss = state.turned_down is not None or state.refused_early
    wanted = s.verification.correct_premise == "always" or (s.verification.correct_premise == "near_miss" and near_miss)
    if state.closest is None or checker is None or not wanted:
        return
    from langchain_core.messages import SystemMessage

    evidence = state.closest.quote
    # A remote server keeps one cached prefix: after the article, as the judgement does, it stays the article's.
    context = state.system if parts.verify_with_article else None
    article = [SystemMessage(context)] if context else []
    messages = parts.prompts.correct.format_messages(article=article, evidence=evidence, question=state.standalone)
    with state.timings.timed("correct"):
        try:
            tokens = parts.tokens(messages, config=state.config, max_tokens=s.verification.correct_max_tokens)
            said = (parts.doc_text(p.doc_id)[start:end] for p in state.view.passages for start, end in p.sentences)
            correction = checked_correction("".join(tokens), state.standalone, evidence, said)
            verdict = correction and checker.judge(state.standalone, correction.statement, [evidence], context)
            if verdict and verdict.passed:
                denied = checker.judge(state.standalone, correction.premise_statement, [state.closest.text], context)
        except Exception:  # the refusal stands on its own: a failed correction must not turn it into an error
            log.warning("No correction for %r: the model failed", state.standalone, exc_info=True)
            return
    if correction is None:
        log.info("No correction of %r kept: it was not of the form, or its words do not stand", state.standalone)
        return
    state.verdicts.append(verdict)
    if verdict.passed and denied.passed:
        log.info("No correction of %r: its paragraph may state %r", state.standalone, correction.premise_statement)
    elif verdict.passed:
        state.text = correction.text


def sentences(state: AnswerState, parts: Parts, question: str, turns: list[dict]) -> Iterator[str]:
    """Stream the model's reply to question, yielding each sentence once it is checked, verified and cited."""
    prompts = parts.prompts
    messages = prompts.answer.format_messages(
        title=state.title, context=state.context, history=prompts.history(turns), question=question
    )
    state.generating_since = since = time.perf_counter()
    buffer, hidden, read = "", [], 0
    state.question_state = None
    try:
        for token in parts.tokens(messages, config=state.config, hidden_states=hidden):
            if not token:  # LangChain closes a stream with an empty chunk: no token, no state
                continue
            state.timings.mark("first_token", since)
            read += 1
            if state.question_state is None and hidden:
                state.question_state = hidden[0]  # the end of the question: what the model makes of it
                if refuse_early(state, parts):
                    return
            state.draft += token
            done, buffer = complete_sentences(buffer + token)
            for sentence in done:
                # the state after the sentence's last token: the one this token was chosen from
                state.sentence_state = hidden[read - 1] if len(hidden) >= read else None
                yield from emit(state, parts, sentence)
            if state.declined:
                return
    finally:
        state.timings.mark("first_token", since)
    state.sentence_state = hidden[-1] if hidden else None  # after the reply's last token
    for sentence in split_answer(buffer):
        yield from emit(state, parts, sentence)


def refuse_early(state: AnswerState, parts: Parts) -> bool:
    """Stop before the answer when the question probe says the article does not answer (ASSISTANT_EARLY_REFUSAL):
    the refusal then comes without generating or judging, and still quotes the nearest sentence."""
    decision = parts.decision
    if not (parts.settings.deciding.early_refusal and decision and decision.refuse_early(state.question_state)):
        return False
    log.info("Refused early %r: P(answerable) %.2f", state.standalone, decision.answerable(state.question_state))
    state.declined = state.refused_early = True
    return True


def emit(state: AnswerState, parts: Parts, sentence: str) -> Iterator[str]:
    """Show sentence (with any pending ones before it) when it passes every check."""
    marked = check(state, parts, sentence)
    if marked and not state.declined:
        piece = state.reply.add(marked)
        state.timings.mark("first_text", state.generating_since)  # the first checked text a reader sees
        yield piece


# ----- check, verify, cite ------------------------------------------------------------------------------------------
def check(state: AnswerState, parts: Parts, sentence: str) -> str | None:
    """The sentence with its citation markers when the passages support it and it passes verification, else None."""
    sentence = clean_sentence(sentence)
    if not sentence:
        return None
    if is_decline(sentence):
        state.declined = True
        return None
    if not parts.settings.retrieval.grounding_check:
        return sentence
    support = parts.grounder.support(sentence, state.candidates, state.standalone, state.referents)
    if support is None and not parts.grounder.claim_terms(sentence)[0]:
        state.reply.pending.append(sentence)  # "Yes." waits for the sentence that backs it
        return None
    if support is None and (support := nearest(state, parts, sentence)) is None:
        log.info("Dropped unsupported sentence: %r", sentence)
        return None
    unmatched = hold_to_question(state, parts, sentence, support)
    if unmatched is None or not verify(state, parts, sentence, support, unmatched):
        return None
    return state.reply.cite(support.sentence, quotes(support), parts.doc_text)


def hold_to_question(state: AnswerState, parts: Parts, sentence: str, support: Support) -> Unmatched | None:
    """What of the question's own words the cited evidence does not match (see question_words.py); None when that
    settles it by words alone (a name, number, negation or opposite), the evidence then quoted as a near miss."""
    checker = parts.question_words
    if checker is None:
        return Unmatched()
    evidence = quotes(support)
    passage = " ".join(p.text for p in support.passages)
    quote = " ".join(parts.doc_text(p.doc_id)[start:end] for p, start, end in evidence)
    named = partial(parts.grounder.named_in, passages=support.passages)
    unmatched = checker.unmatched(state.judged_question, sentence, passage, quote, named)
    if parts.settings.deciding.question_words and unmatched.decisive:
        log.info("Dropped %r: the evidence does not match the question's %s", sentence, unmatched)
        if state.turned_down is None:
            state.turned_down = evidence[0]
        return None
    return unmatched


def nearest(state: AnswerState, parts: Parts, sentence: str) -> Support | None:
    """For a sentence the word check turned down, the passage the judge decides it on; None without a judge, so
    that the word check is then the last word."""
    if not (parts.settings.verification.verify_rescue and parts.settings.verification.verify):
        return None
    return parts.grounder.nearest(sentence, state.candidates, state.standalone, state.referents)


def verify(state: AnswerState, parts: Parts, sentence: str, support: Support, unmatched: Unmatched) -> bool:
    """Ask the judge whether the cited sentences answer this very question, and let the decision weigh that with
    the other signals; record the verdict."""
    verifier = parts.verifier
    if verifier is None:
        return True
    claim = " ".join([*state.reply.pending, sentence])
    evidence = [parts.doc_text(p.doc_id)[start:end] for p, start, end in quotes(support)]
    context = state.system if parts.verify_with_article else None
    with state.timings.timed("verify"):
        try:
            verdict = verifier.judge(state.judged_question, claim, evidence, context)
            verdict = decide(state, parts, verdict, support, unmatched, evidence, context)
        except Exception as exc:
            raise model_failure(exc, parts.settings) from exc
    state.verdicts.append(verdict)
    if not verdict.passed and state.turned_down is None:
        state.turned_down = quotes(support)[0]
    return verdict.passed


def decide(state: AnswerState, parts: Parts, verdict: Verdict, support: Support, unmatched, evidence, context):
    """The verdict with the decision's signals and states, passed when the fitted decision says so (when there is
    one; else the judgement's threshold stands)."""
    cited = tuple(p.passage_id for p in support.passages)
    states = {"question": state.question_state, "answer": state.sentence_state, "judgement": verdict.states}
    decision = parts.decision
    p_claim = None
    if decision is not None and decision.needs_claim and verdict.source == "logprobs":
        p_claim = parts.fact_checker.judge(state.judged_question, verdict.sentence, evidence, context).p_yes
    retrieved = [(p.passage_id, p.distance) for p in state.found.passages] if state.found else []
    values = signals(state.judged_question, verdict.sentence, verdict.p_yes, unmatched, retrieved, cited, p_claim)
    verdict = replace(verdict, passages=cited, states=states, signals=values)
    if decision is None or verdict.source != "logprobs":
        return verdict
    score, threshold = decision.probability(values, states)
    if score < threshold:
        log.info("Decision: %.3f < %.2f for %r (%r)", score, threshold, verdict.sentence, state.judged_question)
    return replace(verdict, score=score, passed=score >= threshold)


def quotes(support: Support):
    """(passage, start, end) of each span that supports a sentence."""
    return [(p, start, end) for p, (start, end) in zip(support.passages, support.quotes, strict=True)]


def the_rest(state: AnswerState, parts: Parts) -> list[str]:
    """Ask for what the first answer left out; return the sentences worth checking (at most one).

    Only a sentence about what the question names, backed by text the first answer did not cite, is kept.
    """
    first = state.reply.kept[0]
    turns = [{"role": "user", "content": state.standalone}, {"role": "assistant", "content": first}]
    messages = parts.prompts.more.format_messages(
        title=state.title, context=state.context, history=parts.prompts.history(turns)
    )
    reply = "".join(parts.tokens(messages, config=state.config))
    names = entity_words(state.standalone, skip_first=True)
    cited = [(c.doc_id, c.start, c.end) for c in state.reply.citations]
    for sentence in split_answer(reply)[: parts.settings.generation.rest_sentences]:
        sentence = clean_sentence(sentence)
        if not sentence or is_decline(sentence) or (names and not any(find_entity(n, sentence) for n in names)):
            continue
        support = parts.grounder.support(sentence, state.candidates, state.standalone)
        if support is None or any(
            p.doc_id == doc and s < end and start < e for p, s, e in quotes(support) for doc, start, end in cited
        ):
            continue  # unsupported, or the first answer's fact again in other words
        return [sentence]
    return []
