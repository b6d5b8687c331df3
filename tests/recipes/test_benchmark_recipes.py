"""The training benchmark's dataset recipes on hand-made miniatures: recipes/snips_slots.py, recipes/banking77_few_shot.py,
recipes/wikisplit.py."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from recipe_loader import load_recipe, read_jsonl




def utterance(*chunks):  # type: ignore[no-untyped-def]
    return {"data": [{"text": c} if isinstance(c, str) else {"text": c[0], "entity": c[1]} for c in chunks]}


def metrics(intent: str, size: str, precision: float, recall: float) -> dict:
    return {"intents": {intent: {"slots": {"city": {"precision": {size: [precision]}, "recall": {size: [recall]}, "rate": 3},
                                          "timeRange": {"precision": {size: [float("nan")]}, "recall": {size: [0.0]}, "rate": 1}}}}}


def write_benchmark(root: Path, recipe) -> None:  # type: ignore[no-untyped-def]
    for intent in recipe.INTENTS:
        folder = root / recipe.FOLDER / intent
        folder.mkdir(parents=True)
        weather = [utterance("Weather in ", ("Paris", "city"), " ", ("tomorrow", "timeRange"), "?"),
                   utterance("Is it ", ("hot", "condition_temperature"), " in ", ("Oslo", "city"), ", ", ("Norway", "country")),
                   utterance("forecast ", ("near", "spatial_relation"), " ", ("here", "current_location"))]
        other = [utterance("play ", ("Abba", "artist"), " and ", ("Queen", "artist"), " on ", ("Spotify", "service"))]
        train = weather if intent == "GetWeather" else other
        for name, records in {f"train_{intent}.json": train, f"train_{intent}_full.json": train + [utterance("sunny in ", ("Rome", "city"))],
                              f"validate_{intent}.json": train[:1]}.items():
            (folder / name).write_text(json.dumps({intent: records}), encoding="utf-8")
        (folder / "Snips_metrics_full.json").write_text(json.dumps(metrics(intent, "1999", 1.0, 0.5)))
        (folder / "Snips_metrics.json").write_text(json.dumps(metrics(intent, "70", 0.5, 0.5)))


def test_the_recipe_writes_schema_valid_records_and_the_reference(tmp_path):
    recipe = load_recipe("snips_slots")
    write_benchmark(tmp_path / "src", recipe)
    recipe.build(tmp_path / "src", tmp_path / "out", weather_train=3, small_per_intent=1)
    for name in ("slots", "slots-70", "weather"):
        schema = json.loads((tmp_path / "out" / name / "schema.json").read_text())
        for part in ("train", "test"):
            for line in (tmp_path / "out" / name / f"{part}.jsonl").read_text().splitlines():
                jsonschema.validate(json.loads(line)["expected"], schema)
    slots = read_jsonl(tmp_path / "out" / "slots" / "train.jsonl")
    assert {"text": "play Abba and Queen on Spotify", "expected": {"artist": "Abba", "service": "Spotify"}} in slots  # first of two
    assert {"text": "Weather in Paris tomorrow?", "expected": {"city": "Paris", "timeRange": "tomorrow"}} in slots
    weather = read_jsonl(tmp_path / "out" / "weather" / "train.jsonl")
    assert len(weather) == 3  # the full file less the test utterance
    assert {"text": "Is it hot in Oslo, Norway", "expected": {"location": "Oslo Norway", "location_kind": "city", "time": None,
                                                              "condition": "hot", "spatial_relation": None}} in weather
    reference = json.loads((tmp_path / "out" / "slots" / "reference.json").read_text())
    assert reference["value"] == round((3 * (2 / 3) + 1 * 0.0) / 4, 4)  # city F1 2/3 three times, timeRange 0 (NaN precision)
    assert "37.5% with 70" in reference["source"]  # city F1 0.5 three times, timeRange 0
    small = read_jsonl(tmp_path / "out" / "slots-70" / "train.jsonl")
    assert len(small) == 7 and all(record in slots for record in small)  # one of each intent's training utterances
    assert sum(record["expected"] == {"artist": "Abba", "service": "Spotify"} for record in small) == 6
    assert read_jsonl(tmp_path / "out" / "slots-70" / "test.jsonl") == read_jsonl(tmp_path / "out" / "slots" / "test.jsonl")
    small_reference = json.loads((tmp_path / "out" / "slots-70" / "reference.json").read_text())
    assert small_reference["value"] == 0.375 and "70 training utterances per intent" in small_reference["source"]
    assert "50.0% with ~2,000" in small_reference["source"]  # the full sets' figure (the slots reference) beside it


def test_the_few_shot_split_takes_as_many_records_of_each_label(tmp_path):
    recipe = load_recipe("banking77_few_shot")
    source = tmp_path / "banking77"
    source.mkdir()
    labels = ["a", "b", "c"]
    for part, count in (("train", 5), ("test", 3)):
        lines = [json.dumps({"id": f"{part}-{label}{i}", "text": f"{label} {i}", "expected": {"intent": label}})
                 for label in labels for i in range(count)]
        (source / f"{part}.jsonl").write_text("\n".join(lines) + "\n")
    (source / "schema.json").write_text(json.dumps({"type": "object", "properties": {"intent": {"enum": labels}}}))
    recipe.build(tmp_path / "out", train_per_label=2, test_per_label=0, dataset=source)
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    test = (tmp_path / "out" / "test.jsonl").read_text().splitlines()
    assert sorted(r["expected"]["intent"] for r in train) == ["a", "a", "b", "b", "c", "c"] and len(test) == 9  # 0: all
    assert set(train[0]) == {"text", "expected"} and (tmp_path / "out" / "kind").read_text().strip() == "classify"


def test_the_wikisplit_recipe_joins_the_two_sentences_and_keeps_test_sentences_out_of_training(tmp_path):
    recipe = load_recipe("wikisplit")
    source = tmp_path / "src"
    source.mkdir()
    pairs = [(f"Ann {i} came and she sat .", f"Ann {i} came . <::::> She sat .") for i in range(6)]
    (source / "tune.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs) + "no split here\n", encoding="utf-8")
    (source / "validation.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in pairs[:2]), encoding="utf-8")
    recipe.build(source, tmp_path / "out", train_size=10, test_size=10)
    folder = tmp_path / "out" / "wikisplit"
    train = read_jsonl(folder / "train.jsonl")
    test = read_jsonl(folder / "test.jsonl")
    assert len(train) == 4 and len(test) == 2 and not {r["text"] for r in train} & {r["text"] for r in test}
    assert {"text": "Ann 0 came and she sat .", "expected": {"text": "Ann 0 came . She sat ."}} in test
    schema = json.loads((folder / "schema.json").read_text())
    for record in train + test:
        jsonschema.validate(record["expected"], schema)
    assert (folder / "kind").read_text().strip() == "rewrite"
    assert json.loads((folder / "reference.json").read_text())["value"] == 0.1522
