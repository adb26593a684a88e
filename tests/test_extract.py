from seqpar.tasks.extract import extract_math_answer, last_boxed, split_reasoning


def test_split_reasoning_keeps_text_after_think():
    assert split_reasoning("<think>hmm</think> The answer is 4.") == (
        "<think>hmm</think>",
        " The answer is 4.",
    )
    assert split_reasoning("plain") == ("", "plain")


def test_unclosed_think_block_has_no_answer():
    assert split_reasoning("<think>still thinking \\boxed{3}") == (
        "<think>still thinking \\boxed{3}",
        None,
    )
    assert extract_math_answer("<think>still thinking \\boxed{3}") is None


def test_boxed_inside_reasoning_is_ignored():
    assert extract_math_answer("<think>\\boxed{1}</think> so \\boxed{2}") == "2"
    assert extract_math_answer("<think>\\boxed{1}</think> no final") is None


def test_last_boxed_with_nested_braces():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert (
        last_boxed("x = \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.")
        == "\\left( 3, \\frac{\\pi}{2} \\right)"
    )
    assert last_boxed("\\boxed 5 is it") == "5"
    assert last_boxed("\\fbox{7}") == "7"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("nothing") is None


def test_gsm8k_hashes_and_answer_is():
    assert extract_math_answer("She has 3 + 4 = 7.\n#### 7") == "7"
    assert extract_math_answer("So the answer is $18.") == "18"
    assert extract_math_answer("The final answer is: **42**") == "42"
    assert extract_math_answer("The answer is 3. Wait, the answer is 5.") == "5"
    assert extract_math_answer("no answer here") is None


def test_boxed_wins_over_phrases():
    assert extract_math_answer("The answer is 3.\n\\boxed{4}") == "4"
