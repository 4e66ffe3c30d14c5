"""The one prompt renderer (seed format)."""

from __future__ import annotations

import pytest

from convassist.core.prompt import (
    ChatLine,
    clean_text,
    extract_reply,
    render_example,
    render_lines,
    render_prompt,
    speaker_label,
)


def test_seed_example_renders_exactly() -> None:
    lines = [
        ChatLine("them", "Hey, how's it going?"),
        ChatLine("me", "Pretty good, just working on some code"),
        ChatLine("them", "Nice! What are you building?"),
    ]
    assert render_prompt(lines) == (
        "Them: Hey, how's it going?\n"
        "Me: Pretty good, just working on some code\n"
        "Them: Nice! What are you building?\n"
        "Me:"
    )


def test_prompt_ends_with_bare_me_even_without_history() -> None:
    assert render_prompt([]) == "Me:"
    assert render_prompt([ChatLine("them", "hi")]).endswith("\nMe:")


def test_newlines_collapse_and_empty_lines_are_skipped() -> None:
    lines = [
        ChatLine("them", "first line\nsecond line\n\nthird\r\n  line"),
        ChatLine("me", "   \n\t "),
        ChatLine("them", ""),
        ChatLine("me", "ok\u2028sure"),
    ]
    prompt = render_prompt(lines)
    assert prompt == "Them: first line second line third line\nMe: ok sure\nMe:"
    assert "\n\n" not in prompt


def test_group_chats_label_other_people_by_name() -> None:
    lines = [
        ChatLine("them", "dinner at 8?", name="Alice"),
        ChatLine("them", "I'm in", name="+15550002222"),
        ChatLine("them", "who's this", name=None),
        ChatLine("me", "count me in", name="ignored for me"),
    ]
    assert render_prompt(lines, group=True) == (
        "Alice: dinner at 8?\n+15550002222: I'm in\nThem: who's this\nMe: count me in\nMe:"
    )
    # One-to-one chats always say Them, whatever name the line carries.
    assert render_lines(lines[:1]) == ["Them: dinner at 8?"]


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Bob\nSmith", "Bob Smith"),
        ("Dr: Who", "Dr Who"),
        ("Me", "Them"),
        ("Them", "Them"),
        ("  ", "Them"),
        (":", "Them"),
    ],
)
def test_group_names_cannot_break_the_format(name: str, label: str) -> None:
    assert speaker_label(ChatLine("them", "x", name=name), group=True) == label


def test_render_example_pairs_prompt_and_completion() -> None:
    context = [ChatLine("them", "want to grab lunch?")]
    prompt, completion = render_example(context, "sure,\nwhere?")
    assert prompt == "Them: want to grab lunch?\nMe:"
    assert completion == " sure, where?"
    # The pair concatenates to exactly what the reply looks like inside a longer prompt.
    longer = render_prompt([*context, ChatLine("me", "sure,\nwhere?")])
    assert longer == prompt + completion + "\nMe:"


def test_render_example_refuses_empty_reply() -> None:
    with pytest.raises(ValueError, match="empty"):
        render_example([ChatLine("them", "hi")], " \n ")


@pytest.mark.parametrize(
    ("generated", "reply"),
    [
        (" Sounds good!", "Sounds good!"),
        (" Sounds good!\nThem: great", "Sounds good!"),
        (" yes\nMe: and more", "yes"),
        (" first\n\nsecond", "first"),
        ("\n\n", ""),
        (" a\nb", "a"),
        (" sure thing\nSam: see you then", "sure thing"),  # an invented next turn
    ],
)
def test_extract_reply_is_the_first_line(generated: str, reply: str) -> None:
    assert extract_reply(generated) == reply


def test_clean_text() -> None:
    assert clean_text("  a \n b\t\tc  ") == "a b c"
