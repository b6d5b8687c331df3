"""Generate the PII-redaction dataset of the built-in ``redact`` task, reproducibly.

    python recipes/make_redact_data.py --out recipes/redact

writes ``train.jsonl`` and ``test.jsonl`` of ``{"text": ..., "expected": {"text": ...}}`` records: short
messages (support tickets, emails, chat, notes) in which names, emails, phone numbers, card/account numbers and
street addresses are replaced by ``[NAME]``, ``[EMAIL]``, ``[PHONE]``, ``[NUMBER]`` and ``[ADDRESS]``, while
non-personal details that look alike (order references, amounts, dates, times, company and city names) stay.

The test split is held out twice over: its people, streets and email domains never occur in train, and a quarter
of the message templates are used only in test, so its score measures redaction of unseen data in unseen wording.
The output depends only on ``--seed`` (Python's ``random`` with a fixed seed), so the committed files can be
checked against a fresh run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

FIRST = [
    "Maria", "James", "Aisha", "Wei", "Olga", "Carlos", "Priya", "Tomasz", "Fatima", "Liam", "Yuki", "Kwame",
    "Sofia", "Mohammed", "Elena", "Noah", "Chen", "Ingrid", "Rahul", "Amara", "Lucas", "Hannah", "Diego", "Mei",
    "Oskar", "Zainab", "Pierre", "Nadia", "Kenji", "Grace", "Mateo", "Leila", "Sven", "Ana", "David", "Chloe",
    "Emeka", "Julia", "Arjun", "Rosa", "Stefan", "Ayesha", "Marco", "Freya", "Tariq", "Lena", "Hiroshi", "Bianca",
]
LAST = [
    "Garcia", "Smith", "Okafor", "Zhang", "Petrova", "Mendes", "Sharma", "Kowalski", "Haddad", "O'Brien", "Tanaka",
    "Mensah", "Rossi", "Al-Farsi", "Ivanova", "Johnson", "Liu", "Larsen", "Gupta", "Nwosu", "Silva", "Becker",
    "Fernandez", "Wong", "Nilsson", "Bello", "Dubois", "Karimi", "Sato", "Thompson", "Lopez", "Rahman", "Berg",
    "Costa", "Cohen", "Martin", "Eze", "Schneider", "Patel", "Morales", "Novak", "Siddiqui", "Ricci", "Walsh",
    "Aziz", "Fischer", "Yamamoto", "Moretti",
]
STREETS = [
    "Baker Street", "Elm Avenue", "Maple Road", "Rue de Rivoli", "Hauptstrasse", "Oak Lane", "King Street",
    "Sunset Boulevard", "Church Road", "Queen's Drive", "Mill Lane", "Park Avenue", "Harbour View", "Station Road",
    "Linden Allee", "Cedar Court", "Victoria Street", "Bridge Street", "Calle Mayor", "High Street",
]
CITIES = [
    ("London", "NW1 6XE"), ("Berlin", "10115"), ("Austin, TX", "78701"), ("Paris", "75001"), ("Toronto, ON", "M5V 2T6"),
    ("Madrid", "28013"), ("Leeds", "LS1 4DY"), ("Portland, OR", "97205"), ("Dublin", "D02 X285"), ("Munich", "80331"),
]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "proton.me", "example.org", "mail.de", "icloud.com", "fastmail.com"]
COMPANIES = ["Acme Corp", "Northwind", "Globex", "Initech", "Contoso", "Umbrella Ltd", "Stark Supplies", "Blue Harbor Bank"]
PRODUCTS = ["router", "standing desk", "laptop charger", "coffee grinder", "winter jacket", "printer", "headphones", "kettle"]
CITY_ONLY = ["Lisbon", "Chicago", "Osaka", "Nairobi", "Oslo", "Melbourne", "Lyon", "Krakow"]


class Message:
    """A message under construction: plain pieces and personal-data pieces, rendered twice (input and redacted)."""

    def __init__(self) -> None:
        self.source: list[str] = []
        self.redacted: list[str] = []

    def say(self, text: str) -> Message:
        self.source.append(text)
        self.redacted.append(text)
        return self

    def pii(self, text: str, placeholder: str) -> Message:
        self.source.append(text)
        self.redacted.append(f"[{placeholder}]")
        return self

    def record(self) -> dict[str, object]:
        return {"text": "".join(self.source), "expected": {"text": "".join(self.redacted)}}


class Pools:
    """The values one split may use (people, streets and email domains are disjoint between splits)."""

    def __init__(self, rng: random.Random, first: list[str], last: list[str], streets: list[str], domains: list[str]) -> None:
        self.rng, self.first, self.last, self.streets, self.domains = rng, first, last, streets, domains

    def person(self) -> tuple[str, str]:
        return self.rng.choice(self.first), self.rng.choice(self.last)

    def full_name(self) -> str:
        first, last = self.person()
        return self.rng.choice([f"{first} {last}", f"{first} {last}", f"{first[0]}. {last}", f"{last}, {first}"])

    def email(self, first: str | None = None, last: str | None = None) -> str:
        if first is None or last is None:
            first, last = self.person()
        clean = last.lower().replace("'", "").replace("-", "")
        local = self.rng.choice([f"{first.lower()}.{clean}", f"{first[0].lower()}{clean}", f"{first.lower()}{self.rng.randint(1, 99)}",
                                 f"{clean}.{first.lower()}"])
        return f"{local}@{self.rng.choice(self.domains)}"

    def phone(self) -> str:
        r = self.rng
        return r.choice([
            f"+1 ({r.randint(201, 989)}) 555-{r.randint(0, 9999):04d}",
            f"{r.randint(201, 989)}-555-{r.randint(0, 9999):04d}",
            f"+44 20 {r.randint(1000, 9999)} {r.randint(1000, 9999)}",
            f"07{r.randint(100, 999)} {r.randint(100000, 999999)}",
            f"+49 30 {r.randint(1000000, 9999999)}",
            f"+33 6 {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)}",
        ])

    def number(self) -> str:
        r = self.rng
        return r.choice([
            " ".join(f"{r.randint(0, 9999):04d}" for _ in range(4)),
            f"{r.randint(1000, 9999)}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)}",
            f"GB{r.randint(10, 99)} NWBK {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(10, 99)}",
            f"DE{r.randint(10, 99)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(10, 99)}",
            f"{r.randint(10000000, 99999999)}",
        ])

    def address(self) -> str:
        r = self.rng
        city, code = r.choice(CITIES)
        street = r.choice(self.streets)
        number = r.choice([str(r.randint(1, 250)), f"{r.randint(1, 99)}{r.choice('ABC')}"])
        return r.choice([f"{number} {street}, {city} {code}", f"{number} {street}", f"{street} {number}, {code} {city}",
                         f"Flat {r.randint(1, 30)}, {number} {street}, {city}"])

    def order(self) -> str:
        return self.rng.choice([f"#{self.rng.randint(10000, 99999)}", f"ORD-{self.rng.randint(1000, 9999)}",
                                f"A{self.rng.randint(100, 999)}-{self.rng.randint(10, 99)}"])

    def amount(self) -> str:
        return self.rng.choice([f"${self.rng.randint(5, 900)}.{self.rng.randint(0, 99):02d}", f"€{self.rng.randint(5, 400)}",
                                f"£{self.rng.randint(5, 300)}.{self.rng.choice(['00', '50', '99'])}"])

    def date(self) -> str:
        return self.rng.choice([f"{self.rng.randint(1, 28)} March", f"2026-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}",
                                f"{self.rng.choice(['Monday', 'Friday', 'Tuesday'])}", f"{self.rng.randint(1, 12)}/{self.rng.randint(1, 28)}/2026"])


Template = Callable[[Pools], Message]


def t_ticket(p: Pools) -> Message:
    first, last = p.person()
    return (Message().say("Hi, this is ").pii(f"{first} {last}", "NAME").say(". My order ").say(p.order())
            .say(f" for a {p.rng.choice(PRODUCTS)} still hasn't arrived. You can reach me on ").pii(p.phone(), "PHONE")
            .say(" or at ").pii(p.email(first, last), "EMAIL").say("."))


def t_refund(p: Pools) -> Message:
    return (Message().say(f"Please refund {p.amount()} to card ").pii(p.number(), "NUMBER")
            .say(f". The charge from {p.rng.choice(COMPANIES)} on {p.date()} was a mistake. Thanks, ").pii(p.full_name(), "NAME"))


def t_delivery(p: Pools) -> Message:
    return (Message().say("Delivery note: leave the parcel with ").pii(p.full_name(), "NAME").say(" at ")
            .pii(p.address(), "ADDRESS").say(f" before {p.rng.randint(9, 11)}am. Order ").say(p.order()).say("."))


def t_email_signature(p: Pools) -> Message:
    first, last = p.person()
    return (Message().say(f"Thanks for the quick reply about the {p.rng.choice(PRODUCTS)}.\n\nBest regards,\n")
            .pii(f"{first} {last}", "NAME").say(f"\n{p.rng.choice(COMPANIES)}\n").pii(p.phone(), "PHONE").say("\n")
            .pii(p.email(first, last), "EMAIL"))


def t_hr(p: Pools) -> Message:
    return (Message().say("New starter: ").pii(p.full_name(), "NAME").say(f", joining on {p.date()}. Salary goes to account ")
            .pii(p.number(), "NUMBER").say(". Home address: ").pii(p.address(), "ADDRESS").say("."))


def t_chat(p: Pools) -> Message:
    first, _ = p.person()
    return (Message().say("hey ").pii(first, "NAME").say(f"! moved to {p.rng.choice(CITY_ONLY)} last week, new number is ")
            .pii(p.phone(), "PHONE").say(" :)"))


def t_change_address(p: Pools) -> Message:
    return (Message().say("Customer ").pii(p.full_name(), "NAME").say(" asked to change the billing address from ")
            .pii(p.address(), "ADDRESS").say(" to ").pii(p.address(), "ADDRESS").say(f" (ticket {p.order()})."))


def t_meeting(p: Pools) -> Message:
    return (Message().say(f"Meeting moved to {p.date()} at {p.rng.randint(1, 5)}pm. ").pii(p.full_name(), "NAME")
            .say(" and ").pii(p.full_name(), "NAME").say(" will join; send the agenda to ").pii(p.email(), "EMAIL").say("."))


def t_no_pii(p: Pools) -> Message:
    return Message().say(f"The {p.rng.choice(PRODUCTS)} from {p.rng.choice(COMPANIES)} costs {p.amount()} and ships to "
                         f"{p.rng.choice(CITY_ONLY)} by {p.date()}. Reference {p.order()}.")


def t_fraud(p: Pools) -> Message:
    return (Message().say("I don't recognise a payment of ").say(p.amount()).say(" on my account ").pii(p.number(), "NUMBER")
            .say(". Please call me back at ").pii(p.phone(), "PHONE").say(" - ").pii(p.full_name(), "NAME"))


def t_form(p: Pools) -> Message:
    first, last = p.person()
    return (Message().say("Name: ").pii(f"{first} {last}", "NAME").say("\nEmail: ").pii(p.email(first, last), "EMAIL")
            .say("\nPhone: ").pii(p.phone(), "PHONE").say("\nAddress: ").pii(p.address(), "ADDRESS")
            .say(f"\nComment: the {p.rng.choice(PRODUCTS)} arrived broken."))


def t_landlord(p: Pools) -> Message:
    return (Message().say("The flat at ").pii(p.address(), "ADDRESS").say(" is available from ").say(p.date())
            .say(". Rent is ").say(p.amount()).say(" a month; contact the landlord, ").pii(p.full_name(), "NAME")
            .say(", on ").pii(p.phone(), "PHONE").say("."))


TRAIN_TEMPLATES: list[Template] = [t_ticket, t_refund, t_delivery, t_email_signature, t_hr, t_chat, t_change_address, t_no_pii, t_fraud]
TEST_ONLY_TEMPLATES: list[Template] = [t_meeting, t_form, t_landlord]


def _halves(values: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
    shuffled = values[:]
    rng.shuffle(shuffled)
    cut = len(shuffled) * 3 // 4
    return shuffled[:cut], shuffled[cut:]


def generate(train_size: int = 800, test_size: int = 200, seed: int = 0) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The two splits; test people, streets, domains and three templates never appear in train."""
    rng = random.Random(seed)
    pools = [_halves(values, rng) for values in (FIRST, LAST, STREETS, DOMAINS)]
    train_pool = Pools(rng, *(train for train, _ in pools))
    test_pool = Pools(rng, *(test for _, test in pools))
    train = [rng.choice(TRAIN_TEMPLATES)(train_pool).record() for _ in range(train_size)]
    test_templates = TRAIN_TEMPLATES + TEST_ONLY_TEMPLATES  # 3 of 12: test-only wording is a quarter of the test split
    test = [rng.choice(test_templates)(test_pool).record() for _ in range(test_size)]
    return train, test


PLACEHOLDER = re.compile(r"\[(?:NAME|EMAIL|PHONE|NUMBER|ADDRESS)\]")


def personal_values(source: str, redacted: str) -> list[str]:
    """The spans of ``source`` that ``redacted`` replaced by placeholders, in order (what must never leak).

    The redacted text is the source with some spans replaced, so its plain parts, in order, locate them.
    """
    parts = PLACEHOLDER.split(redacted)
    match = re.fullmatch("(.+?)".join(re.escape(part) for part in parts), source, flags=re.S)
    if match is None:
        raise ValueError(f"{redacted!r} is not a redaction of {source!r}")
    return list(match.groups())


def main() -> None:
    from split_files import main as write_splits  # recipes/ is on sys.path when this file runs as a script

    write_splits(__doc__.split("\n\n")[0], generate, Path(__file__).parent / "redact")


if __name__ == "__main__":
    main()
