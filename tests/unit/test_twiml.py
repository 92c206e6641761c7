"""TwiML compared as whole documents."""

from shared import twiml

XML = '<?xml version="1.0" encoding="UTF-8"?>'


def test_say_escapes_user_text() -> None:
    assert twiml.say('Hi <b> & "you"', twiml.Speech("alice", "en-US")) == (
        XML + '<Response><Say language="en-US" voice="alice">'
        'Hi &lt;b&gt; &amp; "you"</Say></Response>')


def test_say_or_play() -> None:
    assert twiml.say_or_play(["Hello", "https://x.test/a.mp3", " ", "Bye"]) == (
        XML + "<Response><Say>Hello</Say><Play>https://x.test/a.mp3</Play>"
        "<Say>Bye</Say></Response>")


def test_message_and_empty() -> None:
    assert twiml.message("Thanks") == XML + "<Response><Message>Thanks</Message></Response>"
    assert twiml.message(None) == XML + "<Response />"
    assert twiml.empty() == XML + "<Response />"


def test_characters_xml_cannot_hold_are_dropped() -> None:
    assert twiml.say("a\x00b\x1fc") == XML + "<Response><Say>abc</Say></Response>"
