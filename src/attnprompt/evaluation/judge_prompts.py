"""The judges' prompts, verbatim from the original scorers (facts, quoted; the code around them is ours).

- MM-Vet: ``mm-vet_evaluator.py`` of yuweihao/MM-Vet — the few-shot grading prompt (it ends with a
  line break), and the sentence added to every retry.
- LLaVA-Bench (in the wild): ``llava/eval/table/rule.json`` of haotian-liu/LLaVA — the same rule text
  under ``llava_bench_conv``, ``llava_bench_detail`` and ``llava_bench_complex`` (role "Assistant"),
  and the system message of ``eval_gpt_review_bench.py``.
- HR-Bench: the release's judge (DreamMr/HR-Bench, ``hrbench/vlmeval/dataset/utils/hrbench.py``:
  ``build_prompt`` and the instruction ``pipeline_eval`` puts before it).
- Multiple choice: VLMEvalKit's prompt to the model (``ImageMCQDataset.build_prompt``, which HR-Bench's
  release shares) and its option-matching judge (``vlmeval/dataset/utils/multiple_choice.py``,
  ``build_prompt``), and lmms-eval's copy of that judge (``tasks/hrbench/hrbench_evals.py``).

Long lines are the originals' own (one paragraph per line).
"""

# ruff: noqa: E501

#: MM-Vet's grading prompt; the query appends "\n" + " | ".join([question, answer, prediction, ""]).
MMVET_PROMPT = (
    'Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.\n'
    '\n'
    'Question | Ground truth | Prediction | Correctness\n'
    '--- | --- | --- | ---\n'
    'What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n'
    'What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5\n'
    'What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5\n'
    'What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n'
    'What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0\n'
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4\n"
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0\n"
)

#: Added to the query of every MM-Vet retry after a reply that is not a score in [0, 1].
MMVET_RETRY = "\nPredict the correctness of the answer (digit): "

#: LLaVA-Bench's rule for every category (conv, detail, complex), role "Assistant".
LLAVA_BENCH_RULE = (
    'We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above. The user asks the question on observing an image. For your reference, the visual content in the image is represented with a few sentences describing the image. \n'
    'Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n'
    'Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space.\n'
    'In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment.'
)

#: LLaVA-Bench's system message to the judge.
LLAVA_BENCH_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."


#: VLMEvalKit's multiple-choice prompt: "Hint: …" (when the row has one), "Question: …", the options under
#: "Options:" one per line as "A. text", then this line — with its trailing space and line break.
MCQ_INSTRUCTION = "Please select the correct answer from the options above. \n"


def mcq_prompt(question: str, options: list[str], hint: str | None = None) -> tuple[str, str]:
    """VLMEvalKit's multiple-choice prompt as a sample's question and suffix (the question as given,
    not stripped, as there).

    >>> mcq_prompt("Colour of the car?", ["red", "blue"])
    ('Question: Colour of the car?\\nOptions:\\nA. red\\nB. blue', '\\nPlease select the correct answer from the options above. \\n')
    """
    lines = ([f"Hint: {hint}"] if hint else []) + [f"Question: {question}", "Options:"]
    lines += [f"{chr(65 + i)}. {option}" for i, option in enumerate(options)]
    return "\n".join(lines), "\n" + MCQ_INSTRUCTION


#: HR-Bench's judge: this sentence, a space, then :data:`HRBENCH_JUDGE` filled in — one user message.
HRBENCH_JUDGE_INSTRUCTION = (
    "You are a helpful and precise assistant for checking the quality of the answer. Please answer in only yes or no."
)

#: HR-Bench's judge query: ``prompt`` is the question, a line break, "Options:\n", one "A. text\n" line per
#: option, and :data:`MCQ_INSTRUCTION`; ``answer`` is "B. text" of the correct option; ``prediction`` the reply.
HRBENCH_JUDGE = (
    "Given the following question: {prompt}, the correct answer is: {answer}. Does the following answer correctly "
    "answers the question, answer:{prediction}?"
)

#: The option-matching judge's instructions and two examples (VLMEvalKit's, and lmms-eval's copy).
MCQ_MATCH = (
    'You are an AI assistant who will help me to match an answer with several options of a single-choice question. You are provided with a question, several options, and an answer, and you need to find which option is most similar to the answer. If the meaning of all options are significantly different from the answer, output Z. Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n'
    'Example 1: \n'
    'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
    'Answer: a cute teddy bear\nYour output: A\n'
    'Example 2: \n'
    'Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n'
    'Answer: Spider\nYour output: Z\n'
    'Example 3: \n'
)

#: VLMEvalKit's third example, to fill: the question (a "?" follows it), the options as
#: "There are several options: \n" and one "A. text\n" line each (``build_option_str``), the reply.
MCQ_MATCH_VLMEVALKIT = "Question: {}?\nOptions: {}\nAnswer: {}\nYour output: "

#: lmms-eval's third example (``hrbench_evals.py``): no "?", the options as one "A. text\n" line each.
MCQ_MATCH_LMMS = "Question: {}\nOptions: {}\nAnswer: {}\nYour output: "
