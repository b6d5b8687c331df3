"""SNIPS slot filling (Coucke et al. 2018, github.com/sonos/nlu-benchmark, CC0) as three gemmapipe datasets, for the
training-defaults benchmark (bench/train_defaults.py). None is a built-in task: they check what `gemmapipe train`
gives a new user with its defaults, on data nobody tuned to.

    python recipes/snips_slots.py --source /path/to/nlu-benchmark --out data/snips

``--source`` is a checkout of sonos/nlu-benchmark (commit b86ac7f, the one measured), or its bare git directory
(read with ``git show``). Written into ``--out``:

- ``slots/``: all seven intents of ``2017-06-custom-intent-engines`` together; a schema of 39 **optional string
  fields** (one per slot type; the record holds only the slots its utterance has, 1-6 of them). Train: the
  ``train_<intent>.json`` files (300 per intent, the pool the benchmark's small training sets were drawn from);
  test: the ``validate_<intent>.json`` files (100 per intent).
- ``slots-70/``: the same shape at the benchmark's small size: 70 training utterances per intent (490), drawn with the
  seed from each intent's ``train_<intent>.json``; the same test files. Its reference is Snips NLU's figure at 70.
- ``weather/``: the GetWeather intent as **nullable slot filling**: five required fields that are null when the
  utterance does not say (``location`` joins city, state, country, geographic_poi and current_location in the
  order they appear; ``time``; ``condition`` joins description and temperature; ``spatial_relation``;
  ``location_kind`` says which of the location slots the place was). Train: 500 utterances drawn (seed 0) from
  ``train_GetWeather_full.json``; test: ``validate_GetWeather.json``.

Each folder also gets ``reference.json``: the published baseline bench/train_defaults.py prints beside its result,
the slot F1 of Snips NLU (a CRF slot filler) from the benchmark's own ``Snips_metrics_full.json`` (trained on ~2,000
utterances per intent; ``Snips_metrics.json`` gives it at 70 per intent too), each slot's F1 weighted by how often it
occurs in the test files (the ``rate`` there), so close to a micro F1. For ``weather`` it is the GetWeather slots'
figure: its fields join some of those slots, so it is a pointer, not the same measure.

An utterance that names one slot type twice (4 of 2,100 training ones, 2 test ones) keeps the first value in
``slots`` (the schema has one string per slot type); ``schema.json`` in each folder is the task's schema.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from split_files import Records, read_source, source_main, write_files  # noqa: E402

INTENTS = ("AddToPlaylist", "BookRestaurant", "GetWeather", "PlayMusic", "RateBook", "SearchCreativeWork", "SearchScreeningEvent")
FOLDER = "2017-06-custom-intent-engines"
SMALL_PER_INTENT = 70
LOCATION_SLOTS = ("city", "state", "country", "geographic_poi", "current_location")
CONDITION_SLOTS = ("condition_description", "condition_temperature")


def read_json(source: Path, path: str) -> dict:
    """A JSON file of the benchmark, from a checkout or from a bare git directory."""
    return json.loads(read_source(source, path))


def utterances(source: Path, intent: str, part: str) -> list[list[dict[str, str]]]:
    """The utterances of one file: each a list of chunks ``{"text"}`` or ``{"text", "entity"}``."""
    data = read_json(source, f"{FOLDER}/{intent}/{part}_{intent}.json" if part != "full" else f"{FOLDER}/{intent}/train_{intent}_full.json")
    return [u["data"] for u in data[intent]]


def text_of(chunks: list[dict[str, str]]) -> str:
    return " ".join("".join(c["text"] for c in chunks).split())


def slot_values(chunks: list[dict[str, str]]) -> list[tuple[str, str]]:
    """(slot type, value) in the order of the utterance."""
    return [(c["entity"], " ".join(c["text"].split())) for c in chunks if "entity" in c and c["text"].strip()]


def slots_record(chunks: list[dict[str, str]]) -> dict[str, object]:
    expected: dict[str, str] = {}
    for slot, value in slot_values(chunks):
        expected.setdefault(slot, value)
    return {"text": text_of(chunks), "expected": expected}


def slots_schema(slot_types: list[str]) -> dict[str, object]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "description": "The slots a voice-assistant request names, each as the words of the request; leave out slots it does not name.",
        "properties": {slot: {"type": "string"} for slot in slot_types},
        "additionalProperties": False,
    }


def weather_record(chunks: list[dict[str, str]]) -> dict[str, object]:
    values = slot_values(chunks)
    places = [(slot, value) for slot, value in values if slot in LOCATION_SLOTS]
    times = [value for slot, value in values if slot == "timeRange"]
    conditions = [value for slot, value in values if slot in CONDITION_SLOTS]
    relations = [value for slot, value in values if slot == "spatial_relation"]
    return {"text": text_of(chunks), "expected": {
        "location": " ".join(value for _, value in places) or None,
        "location_kind": places[0][0] if places else None,
        "time": " ".join(times) or None,
        "condition": " ".join(conditions) or None,
        "spatial_relation": " ".join(relations) or None,
    }}


WEATHER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "description": "What a weather question asks about; null where the question does not say.",
    "properties": {
        "location": {"type": ["string", "null"], "description": "the place, in the question's words"},
        "location_kind": {"enum": [*LOCATION_SLOTS, None]},
        "time": {"type": ["string", "null"], "description": "when, in the question's words"},
        "condition": {"type": ["string", "null"], "description": "the weather condition or temperature asked about"},
        "spatial_relation": {"type": ["string", "null"], "description": "near, in the area of, ..."},
    },
    "required": ["location", "location_kind", "time", "condition", "spatial_relation"],
    "additionalProperties": False,
}


def snips_slot_f1(source: Path, intents: tuple[str, ...], full: bool = True) -> float:
    """Snips NLU's published slot F1 over ``intents`` (see the module docstring): trained on ~2,000 utterances per
    intent (``full``) or on 70 (the mean of the benchmark's three draws)."""
    weighted = total = 0.0
    for intent in intents:
        metrics = read_json(source, f"{FOLDER}/{intent}/Snips_metrics{'_full' if full else ''}.json")
        for slot in metrics["intents"][intent]["slots"].values():
            size = next(iter(slot["precision"])) if full else "70"
            scores = []
            for p, r in zip(slot["precision"][size], slot["recall"][size]):
                p, r = (0.0 if x is None or x != x else x for x in (p, r))  # NaN: the slot was never predicted
                scores.append(2 * p * r / (p + r) if p + r else 0.0)
            weighted += sum(scores) / len(scores) * slot["rate"]
            total += slot["rate"]
    return weighted / total


def write_reference(folder: Path, source: Path, intents: tuple[str, ...], what: str, small: bool = False) -> None:
    """``reference.json``: Snips NLU's figure trained on the full sets (~2,000 utterances per intent), or (``small``) on
    the benchmark's sets of 70 per intent; the other figure is named beside it."""
    full, few = snips_slot_f1(source, intents, True), snips_slot_f1(source, intents, False)
    sizes = {"~2,000": full, "70": few}
    size = "70" if small else "~2,000"
    (other,) = set(sizes) - {size}
    reference = {"metric": "field F1", "value": round(sizes[size], 4),
                 "source": f"Snips NLU (CRF), {what}, {size} training utterances per intent (Coucke et al. 2018; {sizes[other]:.1%} with {other})"}
    (folder / "reference.json").write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")


def build(source: Path, out: Path, seed: int = 0, weather_train: int = 500, small_per_intent: int = SMALL_PER_INTENT) -> None:
    train = [slots_record(c) for intent in INTENTS for c in utterances(source, intent, "train")]
    test = [slots_record(c) for intent in INTENTS for c in utterances(source, intent, "validate")]
    slot_types = sorted({slot for record in train + test for slot in record["expected"]})  # type: ignore[union-attr]
    random.Random(seed).shuffle(train)
    # the benchmark's small training sets: 70 utterances per intent (drawn here with the seed, as it drew its own)
    small = [slots_record(c) for intent in INTENTS
             for c in random.Random(f"{seed}-{intent}").sample(utterances(source, intent, "train"), small_per_intent)]
    random.Random(seed).shuffle(small)
    for name, records in (("slots", train), ("slots-70", small)):
        write_files(out / name, {"train": records, "test": test})
        (out / name / "schema.json").write_text(json.dumps(slots_schema(slot_types), indent=2) + "\n", encoding="utf-8")
        write_reference(out / name, source, INTENTS, "slot F1 over the seven intents", small=records is small)

    test_texts = {text_of(c) for c in utterances(source, "GetWeather", "validate")}
    pool = [c for c in utterances(source, "GetWeather", "full") if text_of(c) not in test_texts]
    random.Random(seed).shuffle(pool)
    weather: Records = [weather_record(c) for c in pool[:weather_train]]
    write_files(out / "weather", {"train": weather, "test": [weather_record(c) for c in utterances(source, "GetWeather", "validate")]})
    (out / "weather" / "schema.json").write_text(json.dumps(WEATHER_SCHEMA, indent=2) + "\n", encoding="utf-8")
    write_reference(out / "weather", source, ("GetWeather",), "slot F1 of GetWeather's own slots")


def main() -> None:
    source_main(__doc__.splitlines()[0], build, "sonos/nlu-benchmark")


if __name__ == "__main__":
    main()
