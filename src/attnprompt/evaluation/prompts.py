"""The judges' prompts, verbatim from the original scorers (facts, quoted; the code around them is ours).

- MM-Vet: ``mm-vet_evaluator.py`` of yuweihao/MM-Vet — the few-shot grading prompt (it ends with a
  line break), and the sentence added to every retry.
- LLaVA-Bench (in the wild): ``llava/eval/table/rule.json`` of haotian-liu/LLaVA — the same rule text
  under ``llava_bench_conv``, ``llava_bench_detail`` and ``llava_bench_complex`` (role "Assistant"),
  and the system message of ``eval_gpt_review_bench.py``.

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
