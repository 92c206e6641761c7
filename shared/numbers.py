"""Phone numbers and messaging addresses, as Twilio writes them."""

import re

# `\Z`, not `$`: `$` also matches before a final newline ("+15551234567\n").
E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")

# An incoming message's From and To: an E.164 number, with a channel's prefix for WhatsApp
# (whatsapp:+15551234567) and channels like it; a short code; an alphanumeric sender ID (a
# bank or a service texting a Twilio number: up to 11 letters, digits and spaces, at least
# one letter); or another channel's own id (rcs:, messenger: ...). A captured request
# re-split under the same signature (Twilio signs names and values run together) makes From
# absorb the fields after it ("+15551234567FromCity...MessageSidSM..."): that is none of
# these.
MESSAGING_ADDRESS = re.compile(r"(?:[a-z]{2,16}:)?\+[1-9][0-9]{1,14}"
                               r"|[0-9]{3,8}"
                               r"|(?=[A-Za-z0-9 &._-]*[A-Za-z])[A-Za-z0-9 &._-]{1,11}"
                               r"|(?!whatsapp:)[a-z]{2,16}:[A-Za-z0-9_.@-]{1,64}")
