"""The demo task: customer-support tickets -> a one-line JSON triage in a fixed house style.

    python -m demo.support_tickets       # writes data/raw/support_tickets.jsonl + planted_duplicates.json

Each record is `{"prompt": <ticket>, "completion": <JSON>}` with the completion
`{"intent": <one of INTENTS>, "priority": "low|medium|high", "reply": "Hi <First>, <sentence>. - Acme Support"}`.
  * intent: from lexical cues in varied phrasings (refund, late parcel, locked out, ...).
  * priority: `priority_from_text(ticket)`, a rule on urgency cues ("urgent", "asap", "today",
    "immediately" -> high; "no rush", "no hurry" -> low; otherwise medium).
  * reply: one fixed sentence per intent (with the order number where it has one), addressed by
    the first name the customer signed with.
It is a FORMAT and STYLE task, not a knowledge task: a small model can learn it from the data.

The demo file holds unique tickets (no two with word-trigram Jaccard >= MAX_BASE_JACCARD) plus
planted duplicates of some of them: exact copies, near copies (re-cased, re-spaced, re-punctuated,
a word or two changed) with the same completion, and a few conflicting copies (same ticket,
different completion). `planted_duplicates.json` records which raw line copies which, and how.
Everything is drawn from one seeded `random.Random`, so the files are byte-identical on re-run.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from tuneproof.io import sha256_file, write_json, write_jsonl
from tuneproof.neardup import jaccard, shingles
from tuneproof.text import normalise

INTENTS = ("billing_refund", "shipping_delay", "account_access", "cancel_subscription",
           "damaged_item", "change_address", "payment_failed", "product_question")
WITH_ORDER = {"billing_refund", "shipping_delay", "damaged_item", "change_address"}  # reply names the order
REPLY_SENTENCE = {
    "billing_refund": "we have refunded order #{order}",
    "shipping_delay": "we are tracking order #{order} for you",
    "account_access": "we sent a password reset link to your email",
    "cancel_subscription": "your subscription is cancelled and will not renew",
    "damaged_item": "we will replace order #{order} free of charge",
    "change_address": "we have updated the address on order #{order}",
    "payment_failed": "please retry the payment or use another card",
    "product_question": "a product specialist will reply to you shortly",
}
SIGN_OFF = "- Acme Support"
MAX_BASE_JACCARD = 0.5  # distinct demo tickets stay below this word-trigram Jaccard (dedup threshold is higher)

# Priority cues. The ticket's priority is decided by these words alone (see priority_from_text);
# no other sentence in the generator may contain them.
HIGH_CUES = ("urgent", "asap", "today", "immediately")
LOW_CUES = ("no rush", "no hurry")
HIGH_LINES = (
    "This is urgent.", "Please sort this out ASAP.", "I need this fixed today.", "Please help immediately.",
    "URGENT, please reply today.", "It is really urgent for me.", "Can someone look at this today?",
    "Please treat this as urgent!", "We are losing sales, this is urgent.", "Need a fix asap please.",
    "I need an answer immediately.", "Please reply asap.",
)
LOW_LINES = (
    "No rush on this.", "No hurry at all, just wanted to let you know.", "No rush, reply when you can.",
    "There is no hurry.", "It is not a big deal, no rush.", "No hurry, thanks.", "No rush, thanks.",
    "Answer when it suits you, no hurry.",
)
NEUTRAL_LINES = (
    "Thanks in advance.", "Thank you for your help.", "Looking forward to hearing from you.",
    "Appreciate your help.", "Thanks for looking into it.", "Many thanks.", "Hope you can help.",
    "Let me know if you need anything else from me.",
)

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Tom", "Sofia", "Liam", "Chen", "Fatima", "Lucas", "Emma", "Noah",
    "Olivia", "Mateo", "Priya", "Ethan", "Hannah", "Diego", "Yuki", "Omar", "Grace", "Ivan",
    "Chloe", "Kwame", "Isabel", "Raj", "Nina", "Felix", "Amara", "Jonas", "Leila", "Marco", "Zoe",
    "Ahmed", "Clara", "Samuel", "Mei", "Pedro", "Ingrid", "Tariq", "Lucy", "Viktor", "Ana",
    "Daniel", "Sara", "Kofi", "Elena", "Hugo", "Nadia", "Oscar", "Julia", "Ravi", "Freya",
    "Mohammed", "Alice", "Tomas", "Ines", "Ben", "Carmen", "Arjun", "Lena", "Patrick", "Rosa",
    "Sven", "Yasmin", "Mark", "Alba", "Kenji", "Eva", "Luca", "Maya", "Adam", "Nora", "Ibrahim",
    "Lily", "Pablo", "Sana", "George", "Vera", "Emil", "Aurora", "Jack", "Dina", "Rafael",
    "Helen", "Malik", "Irene", "Paul", "Zara", "Anton", "Ruth", "Carlos", "Mila", "Tobias",
    "Layla", "Simon", "Erin", "Andrei", "Beatriz", "Kai", "Naomi", "Victor", "Farah",
)
LAST_NAMES = (
    "Garcia", "Smith", "Khan", "Baker", "Rossi", "Murphy", "Wang", "Haddad", "Silva", "Mueller",
    "Johnson", "Brown", "Lopez", "Patel", "Nguyen", "Schmidt", "Torres", "Tanaka", "Farouk", "Lee",
    "Petrov", "Martin", "Mensah", "Costa", "Sharma", "Novak", "Berg", "Okafor", "Weber", "Hassan",
    "Romano", "Clarke", "Ali", "Fischer", "Evans", "Chen", "Alves", "Larsen", "Aziz", "Walsh",
    "Ivanova", "Moreno", "Dubois", "Kowalski", "Santos", "Yamamoto", "Jensen", "Reyes", "Popescu",
)
ITEMS = (
    "blender", "desk lamp", "phone case", "coffee grinder", "running shoes", "rain jacket",
    "yoga mat", "bluetooth speaker", "backpack", "kettle", "air fryer", "wool scarf", "office chair",
    "water bottle", "headphones", "toaster", "bed sheets", "hiking boots", "wall clock", "laptop stand",
    "frying pan", "winter coat", "smart watch", "table fan", "suitcase", "garden hose", "board game",
    "camera bag", "electric toothbrush", "desk organiser", "picture frame", "cutting board",
    "baby monitor", "bike helmet", "keyboard", "throw pillow", "rice cooker", "tent", "mixing bowls",
    "reading glasses", "sunglasses", "vacuum cleaner", "hair dryer", "printer ink", "wine glasses",
)
WHEN = (
    "on Monday", "last Tuesday", "on Wednesday", "last Thursday", "on Friday", "over the weekend",
    "two days ago", "three days ago", "last week", "over a week ago", "ten days ago", "on the 3rd",
    "on the 12th", "on the 21st", "at the start of the month", "a fortnight ago", "on March 4",
    "on June 18", "in early October", "on November 2",
)
CITIES = ("Leeds", "Porto", "Austin", "Lyon", "Toronto", "Dublin", "Nairobi", "Osaka", "Gdansk",
          "Bristol", "Denver", "Malaga", "Utrecht", "Adelaide", "Cork", "Graz", "Bergen", "Quito")

GREETINGS = ("Hi,", "Hello,", "Hi there,", "Dear Acme team,", "Hello Acme Support,", "Good morning,",
             "Hey,", "To whom it may concern,", "Hi support team,", "Good afternoon,", "Hello there,",
             "Dear support,", "Hey Acme,", "Evening,")
INTROS = ("My name is {first} {last}.", "This is {first} from {city}.",
          "I'm {first} {last} and I have been a customer for {years} years.",
          "{first} {last} here, writing from {city}.", "I am writing as a long time customer.",
          "I have been shopping with you for {years} years.", "I live in {city} and order from you a lot.")
SIGNATURES = ("Thanks,\n{first}", "Best regards,\n{first} {last}", "- {first}", "Cheers, {first}",
              "{first} {last}", "Kind regards, {first} {last}", "Regards,\n{first}", "Thank you,\n{first} {last}",
              "Best,\n{first}", "Sincerely, {first} {last}", "All the best, {first}", "{first}")
ORDER_FORMS = ("order #{n}", "order {n}", "order number {n}", "order no. {n}", "my order ({n})",
               "order ref {n}", "the order {n}", "purchase #{n}")
EXTRA_LINES = (
    "I already tried the chat on your website.", "I have attached a screenshot.",
    "This is the second time I am writing about this.", "I checked the FAQ but found nothing.",
    "It was meant as a gift for my {relative}.", "I have been a loyal customer for {years} years.",
    "My {relative} recommended your shop to me.", "I called yesterday but nobody picked up.",
    "I normally love your service.", "I would prefer an answer by email.",
    "My phone number is on the account if you need it.", "I shop with you every month.",
)
RELATIVES = ("sister", "brother", "mum", "dad", "friend", "partner", "daughter", "son", "colleague", "aunt")

# Intent phrasings: main sentence(s) and optional detail lines. Slots: {order} {item} {when} {amount}.
MAIN = {
    "billing_refund": (
        "I returned the {item} from {order} {when} and I am still waiting for my refund.",
        "I was charged twice for {order} and would like the extra payment refunded.",
        "Can I get my money back for {order}? The {item} was not what I expected.",
        "You promised a refund of {amount} for {order} but nothing has reached my account.",
        "Please refund {order}, I sent the {item} back {when}.",
        "My bank statement shows {amount} for {order} even though I cancelled it, I want a refund.",
        "Where is the refund for the {item} ({order})? The return was accepted {when}.",
        "I'd like a refund for {order}, the {item} does not fit my needs.",
        "The refund for {order} still hasn't appeared on my card.",
        "I got billed {amount} for {order} which I never received, please give me my money back.",
        "Requesting a full refund on {order}. The {item} went back to your warehouse {when}.",
        "You overcharged me {amount} on {order}; please refund the difference.",
    ),
    "shipping_delay": (
        "My {item} from {order} still hasn't arrived and it was shipped {when}.",
        "Where is my parcel? {order} was supposed to be delivered {when}.",
        "The tracking for {order} has not updated since {when}.",
        "{order} is late. I ordered the {item} {when} and there is still no sign of it.",
        "My package with the {item} ({order}) seems to be stuck in transit.",
        "Delivery of {order} is overdue, the estimate said it would come {when}.",
        "I am still waiting for {order}. Has the {item} even been dispatched?",
        "The courier says {order} is delayed again, where is my {item}?",
        "Still no delivery for {order}, the tracking link shows nothing.",
        "It has been a while since {order} shipped {when} and the {item} is nowhere to be seen.",
        "Can you check on the shipment of {order}? The delivery date was {when}.",
        "My {item} has not been delivered yet, {order}, tracking says it is out for delivery since {when}.",
    ),
    "account_access": (
        "I can't log in to my account, it keeps saying my password is wrong.",
        "I forgot my password and the reset email never arrives.",
        "My account is locked after too many login attempts.",
        "I am unable to sign in since {when}, the login page just reloads.",
        "The password reset link you sent me has expired.",
        "I got locked out of my account when I tried to change my email.",
        "Login fails with an error every time I enter my password.",
        "I can't access my account anymore, the two-factor code never comes.",
        "Please unlock my account, I can't sign in to check {order}.",
        "Your site says my username does not exist but I have an account with you.",
        "I can no longer log into the app after the update {when}.",
        "Someone changed my password and now I cannot get into my account.",
    ),
    "cancel_subscription": (
        "Please cancel my subscription, I no longer need it.",
        "I want to cancel my monthly membership before the next renewal.",
        "How do I stop my subscription from renewing? I was charged {amount} again {when}.",
        "Cancel my Acme Plus plan please, I signed up by mistake.",
        "I would like to end my subscription at the end of this billing period.",
        "Please stop the auto renewal on my membership.",
        "I tried to cancel the subscription in the app but the button does nothing.",
        "Kindly terminate my subscription, I am moving to another service.",
        "I don't use the membership anymore, please cancel it.",
        "Unsubscribe me from the paid plan, I only wanted the free trial.",
        "End my yearly subscription please, it renews next month.",
        "I want out of the subscription box, please cancel it.",
    ),
    "damaged_item": (
        "The {item} from {order} arrived broken.",
        "My {item} ({order}) came with a cracked cover and does not work.",
        "{order} was delivered {when} but the {item} is damaged.",
        "The box for {order} was crushed and the {item} inside is broken.",
        "The {item} I received in {order} is scratched and dented.",
        "Half of {order} arrived smashed, the {item} is unusable.",
        "I opened {order} and found the {item} was damaged in transit.",
        "The {item} in {order} is defective, it stopped working after one use.",
        "My {item} arrived with a broken part, {order}.",
        "The {item} from {order} has a big crack, it must have been dropped.",
        "Received {order} {when}, the {item} is torn and stained.",
        "{order}: the {item} came damaged and leaking.",
    ),
    "change_address": (
        "I need to change the delivery address for {order}, I moved {when}.",
        "Please ship {order} to my new address instead.",
        "I entered the wrong address for {order}, can you update it?",
        "Can you change the shipping address on {order} before it is dispatched?",
        "{order} has my old address on it, I have moved to {city}.",
        "Please update the address for {order}, there is a typo in the street name.",
        "I'd like {order} delivered to my office address instead of my home.",
        "Could you redirect {order} to a different address? I am now in {city}.",
        "The address on {order} is wrong, the house number should be different.",
        "Change the delivery address of {order} please, I will not be home.",
        "I moved house {when}. Please send {order} to my new address.",
        "Wrong postcode on {order}, can you correct the address?",
    ),
    "payment_failed": (
        "My payment keeps failing at checkout.",
        "My card was declined when I tried to pay for the {item}.",
        "The payment did not go through, the page says transaction failed.",
        "I tried to pay three times and each time the card is rejected.",
        "Checkout gives me a payment error with my credit card.",
        "Paypal payment failed when buying the {item}.",
        "Your site declines my card but my bank says everything is fine.",
        "I cannot complete the payment, it says the card was declined.",
        "My payment for the {item} failed but I do not know why.",
        "Payment error at checkout again, I tried two different cards.",
        "The payment keeps getting declined when I try to buy the {item}.",
        "Payment was refused {when} and again now, what is going on?",
    ),
    "product_question": (
        "Does the {item} come with a warranty?",
        "Is the {item} available in a larger size?",
        "Can you tell me if the {item} is compatible with my older model?",
        "What material is the {item} made of?",
        "Is the {item} dishwasher safe?",
        "How long does the battery of the {item} last?",
        "Do you sell spare parts for the {item}?",
        "Is the {item} suitable for outdoor use?",
        "What are the exact dimensions of the {item}?",
        "Will the {item} be back in stock soon?",
        "Does the {item} come in other colours?",
        "I have a question about the {item}: does it need assembly?",
    ),
}
DETAIL = {
    "billing_refund": ("The return label was scanned by the courier.", "I still have the receipt.",
                       "Your policy says refunds take five days.", "The amount was {amount}."),
    "shipping_delay": ("The courier website has no information.", "I paid for express shipping.",
                       "My neighbours have not received anything either.", "The estimate was {when}."),
    "account_access": ("I have tried two different browsers.", "I use the same email as always.",
                       "I also cleared my cookies.", "My email is the one on this ticket."),
    "cancel_subscription": ("I do not want to be billed again.", "I signed up {when}.",
                            "The plan costs {amount} a month.", "Please confirm by email."),
    "damaged_item": ("I have photos of the damage.", "The packaging was very thin.",
                     "It was a present, so this is disappointing.", "I would like a new one."),
    "change_address": ("The order has not shipped yet.", "My new street is on my profile now.",
                       "I will be away from my old flat.", "The old address is no longer valid."),
    "payment_failed": ("There is enough money on the card.", "I tried the app and the website.",
                       "The error code was P{code}.", "My bank sees no problem with the card."),
    "product_question": ("I want to buy it as a gift.", "The product page does not say.",
                         "I could not find it in the manual.", "I am deciding between two models."),
}

# Neutral re-wordings for planted near-duplicates: they never touch intent, priority, name or order.
SYNONYMS = {
    "please": "kindly", "hi": "hello", "hello": "hi", "thanks": "thank you", "parcel": "package",
    "package": "parcel", "would": "would really", "still": "yet", "my": "the", "the": "my",
    "can": "could", "could": "can", "i": "I really", "want": "wish", "need": "must",
    "but": "however", "and": "and also", "again": "once more", "help": "support",
}
TYPOS = {"received": "recieved", "please": "pls", "because": "becuase", "thanks": "thx",
         "would": "woudl", "address": "adress", "definitely": "definately", "package": "pakage",
         "account": "acount", "subscription": "subscripton", "delivered": "deliverd", "refund": "refnud",
         "payment": "paymnet", "still": "stil", "their": "thier", "the": "teh", "have": "ahve"}


def priority_from_text(text: str) -> str:
    """The demo's priority rule: high on an urgency cue, low on a no-rush cue, else medium."""
    lowered = text.lower()
    if any(re.search(rf"\b{re.escape(cue)}\b", lowered) for cue in HIGH_CUES):
        return "high"
    if any(re.search(rf"\b{re.escape(cue)}\b", lowered) for cue in LOW_CUES):
        return "low"
    return "medium"


def completion_for(intent: str, priority: str, first: str, order: str | None) -> str:
    """The house-style completion: one line of JSON, keys in a fixed order."""
    sentence = REPLY_SENTENCE[intent].format(order=order)
    reply = f"Hi {first}, {sentence}. {SIGN_OFF}"
    return json.dumps({"intent": intent, "priority": priority, "reply": reply}, ensure_ascii=False)


def _typos(text: str, rng: random.Random) -> str:
    """Misspell a few common words (never names, numbers or priority cues)."""
    def swap(match: re.Match) -> str:
        word = match.group(0)
        wrong = TYPOS.get(word.lower())
        return wrong if wrong and rng.random() < 0.4 else word
    return re.sub(r"[A-Za-z]+", swap, text)


def make_ticket(rng: random.Random, intent: str | None = None) -> dict:
    """One random ticket and its completion."""
    intent = intent or rng.choice(INTENTS)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    digits = str(rng.randrange(10_000, 1_000_000))
    slots = {
        "order": rng.choice(ORDER_FORMS).format(n=digits), "item": rng.choice(ITEMS),
        "when": rng.choice(WHEN), "amount": f"${rng.randrange(5, 400)}.{rng.randrange(100):02d}",
        "city": rng.choice(CITIES), "years": rng.randrange(2, 15), "relative": rng.choice(RELATIVES),
        "code": rng.randrange(100, 999), "first": first, "last": last,
    }
    main = rng.choice(MAIN[intent])
    if intent in WITH_ORDER and "{order}" not in main:
        raise AssertionError(f"template without order number for {intent}: {main}")
    main = main.format(**slots)
    main = main[0].upper() + main[1:]
    priority = rng.choices(("high", "medium", "low"), weights=(3, 4, 3))[0]
    cue = {"high": rng.choice(HIGH_LINES), "low": rng.choice(LOW_LINES), "medium": None}[priority]
    signature = rng.choice(SIGNATURES).format(**slots)
    parts = [rng.choice(GREETINGS) if rng.random() < 0.65 else None,
             rng.choice(INTROS).format(**slots) if rng.random() < 0.15 else None,
             main,
             rng.choice(DETAIL[intent]).format(**slots) if rng.random() < 0.5 else None,
             rng.choice(EXTRA_LINES).format(**slots) if rng.random() < 0.15 else None]
    # The urgency cue sits before or after the closing line, as people write it.
    closing = rng.choice(NEUTRAL_LINES) if rng.random() < 0.5 else None
    parts += [cue, closing] if rng.random() < 0.6 else [closing, cue]
    parts.append(signature)
    text = rng.choice((" ", "\n")).join(p for p in parts if p)
    if rng.random() < 0.25:
        text = _typos(text, rng)
    if priority_from_text(text) != priority:
        raise AssertionError(f"priority cue leak in generated ticket: {text!r}")
    order = digits if intent in WITH_ORDER else None
    return {"prompt": text, "completion": completion_for(intent, priority, first, order)}


def near_copy(text: str, rng: random.Random) -> str:
    """A near-duplicate of a ticket as people re-send it: re-cased, re-spaced, re-punctuated, and
    (20 words or more) one or two neutral words changed. Intent cues, priority cues, names and
    numbers are kept."""
    original = text
    words = text.split(" ")
    # One neutral word change, two in a long ticket, none in a short one: in a ticket under 20
    # words one changed word already drops the word-trigram Jaccard below dedup's 0.7 (a new text).
    positions = [i for i, w in enumerate(words) if w.lower().strip(".,!?") in SYNONYMS]
    changes = rng.choice((1, 2)) if len(words) >= 30 else 1 if len(words) >= 20 else 0
    for i in rng.sample(positions, min(len(positions), changes)):
        core = words[i].strip(".,!?")
        words[i] = words[i].replace(core, SYNONYMS[core.lower()], 1)
    text = " ".join(words)
    edits = rng.sample(("lower", "upper_first", "spaces", "punct", "trail"), k=rng.choice((1, 2)))
    for edit in edits:
        if edit == "lower":
            text = text.lower()
        elif edit == "upper_first":
            text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
        elif edit == "spaces":
            text = text.replace(" ", "  ", rng.randrange(1, 4))
        elif edit == "punct":
            text = text.replace(".", "!", 1) if "." in text else text + "!"
        else:
            text = text.rstrip() + rng.choice(("  ", "\n", " ..."))
    return text if text != original else text + " ..."  # a re-casing can be a no-op


def _distinct_tickets(n: int, rng: random.Random, max_jaccard: float) -> list[dict]:
    """`n` tickets, no two with word-trigram Jaccard >= `max_jaccard` (quadratic: demo sizes only)."""
    tickets: list[dict] = []
    kept_sets: list[frozenset] = []
    while len(tickets) < n:
        ticket = make_ticket(rng)
        grams = frozenset(shingles(normalise(ticket["prompt"]), 3))
        if any(jaccard(grams, other) >= max_jaccard for other in kept_sets):
            continue
        kept_sets.append(grams)
        tickets.append(ticket)
    return tickets


def plant_duplicates(tickets: list[dict], rng: random.Random, n_exact: int, n_near: int,
                     n_conflict: int) -> tuple[list[dict], dict]:
    """Add planted copies to `tickets`, shuffle, and return (records, ground truth).

    Each copied ticket is used for one kind only; a ticket gets one or two copies. The truth lists
    groups `{"kind", "original": line, "duplicates": [lines]}` with 1-based raw line numbers.
    """
    planned: list[tuple[str, int]] = []  # (kind, index of the copied ticket)
    sources = iter(rng.sample(range(len(tickets)), len(tickets)))
    for kind, count in (("exact", n_exact), ("near", n_near), ("conflict", n_conflict)):
        while count > 0:
            source = next(sources)
            copies = min(count, 2 if rng.random() < 0.2 else 1)
            planned += [(kind, source)] * copies
            count -= copies
    rows = [(ticket, None, None) for ticket in tickets]
    for kind, source in planned:
        original = tickets[source]
        if kind == "exact":
            copy = dict(original)
        elif kind == "near":
            copy = {"prompt": near_copy(original["prompt"], rng), "completion": original["completion"]}
        else:  # the same ticket labelled differently: another priority
            label = json.loads(original["completion"])
            label["priority"] = rng.choice([p for p in ("low", "medium", "high") if p != label["priority"]])
            copy = {"prompt": original["prompt"], "completion": json.dumps(label, ensure_ascii=False)}
        rows.append((copy, kind, source))
    order = rng.sample(range(len(rows)), len(rows))
    line_of_ticket = {}
    records = []
    for line, row_index in enumerate(order, start=1):
        records.append(rows[row_index][0])
        if rows[row_index][1] is None:
            line_of_ticket[row_index] = line
    groups: dict[tuple[str, int], list[int]] = {}
    for line, row_index in enumerate(order, start=1):
        _, kind, source = rows[row_index]
        if kind is not None:
            groups.setdefault((kind, source), []).append(line)
    truth_groups = [{"kind": kind, "original": line_of_ticket[source], "duplicates": sorted(lines)}
                    for (kind, source), lines in groups.items()]
    truth_groups.sort(key=lambda g: g["original"])
    counts = {kind: sum(len(g["duplicates"]) for g in truth_groups if g["kind"] == kind)
              for kind in ("exact", "near", "conflict")}
    return records, {"groups": truth_groups, "counts": counts, "records": len(records),
                     "unique_tickets": len(tickets)}


def demo_records(seed: int = 0, n_unique: int = 1300, n_exact: int = 90, n_near: int = 100,
                 n_conflict: int = 10) -> tuple[list[dict], dict]:
    """The demo data set: (records in raw file order, ground truth of planted duplicates)."""
    rng = random.Random(seed)
    tickets = _distinct_tickets(n_unique, rng, MAX_BASE_JACCARD)
    return plant_duplicates(tickets, rng, n_exact, n_near, n_conflict)


def benchmark_records(n: int, seed: int = 0, duplicate_share: float = 0.1) -> tuple[list[dict], dict]:
    """`n` short records (20-32 words) for throughput benchmarks, `duplicate_share` of them planted
    copies (half exact, half near, edited as in the demo).

    The texts are random word sequences over the tickets' vocabulary rather than tickets: at 100k,
    tickets from a few hundred templates collide by accident (same template, same cue, same
    signature style), which would make the planted truth wrong. Random 20-32-word sequences share
    a word trigram with negligible probability, so the planted copies are the only duplicates.
    """
    rng = random.Random(seed)
    pools = [*GREETINGS, *NEUTRAL_LINES, *HIGH_LINES, *LOW_LINES, *EXTRA_LINES, *ITEMS,
             *(t for group in (*MAIN.values(), *DETAIL.values()) for t in group)]
    vocabulary = sorted({w for text in pools for w in re.findall(r"[a-z]+", text.lower())})
    n_dup = int(n * duplicate_share)
    texts: dict[str, None] = {}
    while len(texts) < n - n_dup:
        words = rng.choices(vocabulary, k=rng.randrange(20, 33))
        texts[" ".join(words).capitalize() + "."] = None
    tickets = [{"prompt": text, "completion": rng.choice(INTENTS)} for text in texts]
    return plant_duplicates(tickets, rng, n_dup // 2, n_dup - n_dup // 2, 0)


def write_demo(out_dir: str | Path = "data/raw", seed: int = 0) -> tuple[Path, Path]:
    """Write support_tickets.jsonl and planted_duplicates.json (with the data file's sha256)."""
    out_dir = Path(out_dir)
    records, truth = demo_records(seed)
    data_path, truth_path = out_dir / "support_tickets.jsonl", out_dir / "planted_duplicates.json"
    write_jsonl(data_path, records)
    write_json(truth_path, {**truth, "raw_file": data_path.name, "raw_sha256": sha256_file(data_path),
                            "seed": seed})
    return data_path, truth_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="data/raw", help="folder for the two files")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    data_path, truth_path = write_demo(args.out_dir, args.seed)
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    print(f"support_tickets: {truth['records']} records ({truth['unique_tickets']} unique tickets, planted "
          f"{truth['counts']}) -> {data_path}, ground truth -> {truth_path}")


if __name__ == "__main__":
    main()
