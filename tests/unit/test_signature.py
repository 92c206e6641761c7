"""Known-answer vectors: twilio-python's own (token "12345"), plus vectors computed with a
plain HMAC-SHA1 for Azure's case: Twilio signs the public https URL, the worker sees http."""

from shared.signature import FormParams, is_valid, public_url

TOKEN = "12345"
PARAMS = {"CallSid": ["CA1234567890ABCDE"], "Digits": ["1234"], "From": ["+14158675309"],
          "To": ["+18005551212"], "Caller": ["+14158675309"]}
BODY = '{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
PUBLIC = "https://func-x.azurewebsites.net"


def test_twilio_vector() -> None:
    assert is_valid(url="https://mycompany.com/myapp.php?foo=1&bar=2", auth_token=TOKEN,
                    signature="RSOYDt4T1cUTdK1PDd93/VVr8B8=", form=PARAMS)


def test_twilio_vector_repeated_params() -> None:
    form = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234"]}
    assert is_valid(url="https://mycompany.com/myapp.php?foo=1&bar=2", auth_token=TOKEN,
                    signature="IK+Dwps556ElfBT0I3Rgjkr1wJU=", form=form)


def test_public_origin_replaces_what_the_worker_saw() -> None:
    seen = "http://10.0.0.4:80/myapp.php?foo=1&bar=2"
    url = public_url(seen, "https://mycompany.com")
    assert url == "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert is_valid(url=url, auth_token=TOKEN, signature="RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                    form=PARAMS)
    # Without the public origin, the same request fails: that is why WEBHOOK_BASE_URL exists.
    assert not is_valid(url=seen, auth_token=TOKEN, signature="RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                        form=PARAMS)


def test_post_with_function_key_in_query() -> None:
    url = public_url("http://localhost:7071/api/voice?code=abc%3D%3D", PUBLIC)
    assert url == PUBLIC + "/api/voice?code=abc%3D%3D"  # kept as received, not re-encoded
    assert is_valid(url=url, auth_token=TOKEN, signature="AiK495ftXtNDVqjNSNNGeDBw+W8=",
                    form=PARAMS)
    assert not is_valid(url=PUBLIC + "/api/voice", auth_token=TOKEN,
                        signature="AiK495ftXtNDVqjNSNNGeDBw+W8=", form=PARAMS)


def test_get_without_and_with_code() -> None:
    url = public_url("http://127.0.0.1/api/twiml/message?Message=Hello+there&Voice=alice",
                     PUBLIC)
    assert is_valid(url=url, auth_token=TOKEN, signature="vY2QA+yFGQ72FNU54xSGvgKosHc=")
    url = public_url("http://127.0.0.1/api/twiml/message?Message=Hi&code=k1", PUBLIC)
    assert is_valid(url=url, auth_token=TOKEN, signature="XnZz4ykLOE6SvFaY60OKxs85Nyg=")


def test_json_body_checked_through_body_sha256() -> None:
    url = f"https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={BODY_HASH}"
    assert is_valid(url=url, auth_token=TOKEN, signature="a9nBmqA0ju/hNViExpshrM61xv4=",
                    body=BODY)
    assert not is_valid(url=url, auth_token=TOKEN, signature="a9nBmqA0ju/hNViExpshrM61xv4=",
                        body=BODY.replace("value", "other"))


def test_wrong_missing_or_replayed_signature_fails() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not is_valid(url=url, auth_token="54321", signature=good, form=PARAMS)
    assert not is_valid(url=url, auth_token=TOKEN, signature=None, form=PARAMS)
    assert not is_valid(url=url, auth_token=TOKEN, signature="", form=PARAMS)
    replayed = {**PARAMS, "Digits": ["9999"]}
    assert not is_valid(url=url, auth_token=TOKEN, signature=good, form=replayed)


def test_form_params_getall() -> None:
    params = FormParams({"a": ["1", "2"]})
    assert params.getall("a") == ["1", "2"]
    assert params.first("a") == "1"
    assert params.first("missing", "d") == "d"
