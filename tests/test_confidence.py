"""Token log-probabilities from every backend, and the confidences read from them.

A local model's come from its generation's logits (checked against a separate forward pass); a server's
from ``logprobs``/``top_logprobs`` (checked against a fake server's reply and against attnprompt's own
server fronting the local model); asking is opt-in, and an answer without them is one clear error.
"""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from builders import loaded, random_image
from PIL import Image

from attnprompt.backends.local import LocalVLM
from attnprompt.backends.openai_http import OpenAIBackend
from attnprompt.confidence import LogprobsUnavailableError, first_token_probability, yes_no_word, yes_probability
from attnprompt.errors import InputError
from attnprompt.models import generate
from attnprompt.serve import ChatCompletionsHandler, make_server
from attnprompt.types import Answer, Request, Step, TokenLogprob


def forward_logprobs(vlm, inputs, row: int, generated: list[int]) -> torch.Tensor:
    """log-softmax at the last position of row ``row`` of a generation's own inputs (its left padding taken
    off) followed by ``generated``: one plain forward pass, no cache."""
    keep = inputs["attention_mask"][row].bool()
    ids = torch.cat([inputs["input_ids"][row][keep], torch.tensor(generated, dtype=torch.long)])[None]
    with torch.no_grad():
        logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                           pixel_values=inputs["pixel_values"][row:row + 1]).logits
    return torch.log_softmax(logits[0, -1].float(), dim=-1)


def test_local_logprobs_equal_a_forward_pass_softmax_in_a_padded_batch():
    vlm = loaded("llava")
    tokenizer = vlm.processor.tokenizer
    # two prompts of different lengths in one left-padded batch; a few tokens each
    requests = [Request.single(random_image(40, 30, seed=1), "What is it?", max_new_tokens=3, top_logprobs=5),
                Request.single(random_image(30, 40, seed=2), "Describe the picture in a few more words, please.",
                               max_new_tokens=3, top_logprobs=5)]
    out = generate(vlm, requests)
    assert out.inputs["attention_mask"][0].sum() < out.inputs["attention_mask"][1].sum()  # row 0 is padded
    answers = LocalVLM(vlm, batch_size=2).answer(requests)
    checked = 0
    for b, answer in enumerate(answers):
        assert answer.ok and answer.logprobs == out.logprobs[b]  # the backend reports what generate read
        ids = tokenizer.convert_tokens_to_ids([t.token for t in answer.logprobs])
        assert ids == out.tokens[b][:len(ids)] and len(ids) in (len(out.tokens[b]), len(out.tokens[b]) - 1)
        for t, token in enumerate(answer.logprobs):
            expected = forward_logprobs(vlm, out.inputs, b, ids[:t])
            assert abs(token.logprob - float(expected[ids[t]])) <= 1e-5
            top_values, top_ids = torch.topk(expected, 5)
            assert [a for a, _ in token.top] == tokenizer.convert_ids_to_tokens(top_ids.tolist())
            assert max(abs(lp - float(v)) for (_, lp), v in zip(token.top, top_values)) <= 1e-5
            checked += 1
    assert checked >= 4


def test_the_shapes_vlm_logprobs_match_its_forward_pass_and_make_a_yes_no_confidence():
    from attnprompt.shapes import make_scene

    backend = LocalVLM.from_pretrained("shapes")
    scene = make_scene(7, n_objects=5, size=320)
    present = scene.objects[0].name
    request = Request.single(scene.image, f"Is there a {present}?", max_new_tokens=2, top_logprobs=4)
    answer = backend.answer([request])[0]
    expected = forward_logprobs(backend.vlm, generate(backend.vlm, [request]).inputs, 0, [])
    yes, no = (backend.vlm.processor.tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
    assert answer.logprobs[0].token in ("yes", "no")
    p = yes_probability(answer)
    want = math.exp(float(expected[yes])) / (math.exp(float(expected[yes])) + math.exp(float(expected[no])))
    assert abs(p - want) <= 1e-5
    assert abs(first_token_probability(answer) - math.exp(float(expected.max()))) <= 1e-5


def test_logprobs_are_opt_in_and_recorded_only_when_asked():
    from attnprompt.shapes import make_scene

    backend = LocalVLM.from_pretrained("shapes")
    image = make_scene(7, n_objects=5, size=320).image
    plain = backend.answer([Request.single(image, "What colour is the circle?", max_new_tokens=2)])[0]
    asked_req = Request.single(image, "What colour is the circle?", max_new_tokens=2, top_logprobs=0)
    asked = backend.answer([asked_req])[0]
    assert plain.logprobs is None and "logprobs" not in plain.to_dict()
    assert plain.ok and asked.text == plain.text  # asking changes nothing of the answer
    assert asked.logprobs[0].top == () and asked.logprobs[0].logprob <= 0.0
    step = Step("answer", asked_req, asked).to_dict()
    assert step["top_logprobs"] == 0 and step["answer"]["logprobs"][0]["token"] == asked.logprobs[0].token
    assert "top_logprobs" not in Step("answer", Request.single(image, "q?"), plain).to_dict()
    assert asked_req.then("red", "Sure?").top_logprobs == 0


@pytest.mark.parametrize("bad", [-1, 21, True, 2.0, "5"])
def test_top_logprobs_out_of_range_is_one_clear_error(bad):
    with pytest.raises(InputError, match=r"top_logprobs must be None \(no probabilities\) or an integer in 0\.\.20"):
        Request.single((), "q?", top_logprobs=bad)


def test_yes_no_spellings_are_summed_in_any_casing_and_with_leading_spaces():
    top = ((" Yes", math.log(0.3)), ("yes", math.log(0.1)), ("\u2581YES", math.log(0.1)),
           ("\u0120No", math.log(0.2)), ("no", math.log(0.05)), ("Maybe", math.log(0.2)))
    answer = Answer("Yes", logprobs=[TokenLogprob(" Yes", math.log(0.3), top)])
    assert yes_probability(answer) == pytest.approx(0.5 / 0.75)
    # the chosen token counts once when it is among the alternatives, and is added when it is not
    answer = Answer("Yes", logprobs=[TokenLogprob("Yes", math.log(0.5), (("No", math.log(0.25)),))])
    assert yes_probability(answer) == pytest.approx(2 / 3)
    assert yes_probability(Answer("Red", logprobs=[TokenLogprob("Red", -0.1, (("Blue", -3.0),))])) is None
    assert [yes_no_word(w) for w in ("YES", " no ", "Nope", "")] == ["yes", "no", None, None]


def test_an_answer_without_logprobs_is_one_clear_error_naming_the_strategy():
    with pytest.raises(LogprobsUnavailableError) as e:
        yes_probability(Answer("Yes", model="http://h:1/v1#m"), needed_by="zoom-search")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("zoom-search needs the answer's token log-probabilities, and 'http://h:1/v1#m' "
                              "returned none")
    with pytest.raises(InputError, match="cannot read probabilities from a failed answer"):
        first_token_probability(Answer("", ok=False, error="down"), needed_by="auto")


# -- servers -------------------------------------------------------------------------------------------


@pytest.fixture
def serve():
    running = []

    def start(backend=None, handler=ChatCompletionsHandler):
        server = make_server(backend, "127.0.0.1", 0, handler=handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in running:
        server.shutdown()
        server.server_close()


def replying(reply: dict, seen: list):
    """A handler that records each POSTed body and sends ``reply`` (a chat.completion)."""

    class Handler(ChatCompletionsHandler):
        def do_POST(self):
            seen.append(json.loads(self.read_body()))
            self.send_json(200, reply)

    return Handler


VLLM_REPLY = {"object": "chat.completion", "model": "m", "choices": [{
    "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Yes"},
    "logprobs": {"content": [{"token": "Yes", "logprob": -0.2231, "bytes": [89, 101, 115], "top_logprobs": [
        {"token": "Yes", "logprob": -0.2231, "bytes": [89, 101, 115]},
        {"token": " yes", "logprob": -2.3026, "bytes": [32, 121, 101, 115]},
        {"token": "No", "logprob": -1.8971, "bytes": [78, 111]}]}]}}]}


def test_the_openai_backend_asks_for_and_reads_top_logprobs(serve):
    seen: list = []
    url = serve(handler=replying(VLLM_REPLY, seen))
    answer = OpenAIBackend(url, "m").answer([Request.single(Image.new("RGB", (8, 8)), "Is there a cat? Answer Yes "
                                                            "or No.", max_new_tokens=1, top_logprobs=3)])[0]
    assert seen[0]["logprobs"] is True and seen[0]["top_logprobs"] == 3
    assert answer.ok and answer.text == "Yes"
    assert answer.logprobs == (TokenLogprob("Yes", -0.2231, (("Yes", -0.2231), (" yes", -2.3026), ("No", -1.8971))),)
    p_yes = math.exp(-0.2231) + math.exp(-2.3026)
    assert yes_probability(answer) == pytest.approx(p_yes / (p_yes + math.exp(-1.8971)))
    assert answer.to_dict()["logprobs"][0]["top"][1] == [" yes", -2.3026]


def test_a_request_without_top_logprobs_does_not_ask_the_server(serve):
    seen: list = []
    url = serve(handler=replying(VLLM_REPLY, seen))
    OpenAIBackend(url, "m").answer([Request.single((), "Hi?")])
    assert "logprobs" not in seen[0] and "top_logprobs" not in seen[0]


def test_a_server_that_returns_no_logprobs_gives_the_text_and_one_clear_error_when_they_are_needed(serve):
    reply = {"choices": [{"message": {"role": "assistant", "content": "Yes"}, "finish_reason": "stop"}]}
    url = serve(handler=replying(reply, []))
    answer = OpenAIBackend(url, "gpt-x").answer([Request.single((), "Is it? Answer Yes or No.", top_logprobs=5)])[0]
    assert answer.ok and answer.text == "Yes" and answer.logprobs is None
    with pytest.raises(LogprobsUnavailableError, match=r"^zoom-search needs the answer's token log-probabilities, "
                                                       r"and 'gpt-x' returned none"):
        yes_probability(answer, needed_by="zoom-search")


def test_unreadable_logprobs_keep_the_answer_and_say_why(serve):
    reply = {"choices": [{"message": {"content": "Yes"}, "logprobs": {"tokens": ["Yes"], "token_logprobs": [-0.1]}}]}
    url = serve(handler=replying(reply, []))
    answer = OpenAIBackend(url, "m").answer([Request.single((), "q?", top_logprobs=2)])[0]
    assert answer.ok and answer.logprobs is None
    assert answer.meta["logprobs_error"].startswith("unreadable logprobs")


def test_attnprompt_serve_returns_the_local_models_logprobs(serve):
    from attnprompt.shapes import make_scene

    local = LocalVLM.from_pretrained("shapes")
    scene = make_scene(7, n_objects=5, size=320).image
    request = Request.single(scene, "What colour is the circle?", max_new_tokens=2, top_logprobs=3)
    direct = local.answer([request])[0]
    url = serve(backend=local)
    over_http = OpenAIBackend(url, "shapes").answer([request])[0]
    assert over_http.text == direct.text
    assert over_http.logprobs == direct.logprobs  # JSON floats round-trip exactly
    unasked = Request.single(scene, "What colour is the circle?")
    assert OpenAIBackend(url, "shapes").answer([unasked])[0].logprobs is None


def test_the_server_refuses_top_logprobs_out_of_range(serve):
    import urllib.error
    import urllib.request

    url = serve(backend=LocalVLM.from_pretrained("shapes"))
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 50})
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body.encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 400
    assert "'top_logprobs' must be an integer in 0..20; got 50" in json.loads(e.value.read())["error"]["message"]
