"""Study-file validation: every problem at once, each with its key and its fix."""

from __future__ import annotations

import pytest
import yaml

from autobert.cli import main
from autobert.config.schema import load_study
from autobert.errors import ConfigError
from autobert.run.plugin_manager import get_plugin_manager
from autobert.study.validation import validate_study
from autobert.testing import write_study


def _problems(path) -> list[str]:
    study = load_study(path)
    with pytest.raises(ConfigError) as info:
        validate_study(study, get_plugin_manager(disable=study.disable))
    return info.value.problems


def test_three_mistakes_are_reported_together_each_with_a_fix(tmp_path):
    path = write_study(tmp_path, name="broken",
                       data={"train": "data/nope.csv", "validation": "data/validation.csv",
                             "text_column": "sentence"},
                       techniques={"pooing": {"kind": "mean"}})
    problems = _problems(path)
    assert len(problems) == 3, problems
    unknown, = [p for p in problems if p.startswith("techniques.pooing")]
    assert "unknown technique" in unknown and "autobert plugins" in unknown
    missing_file, = [p for p in problems if p.startswith("data.train")]
    assert "file not found" in missing_file and "nope.csv" in missing_file and "fix the path" in missing_file
    column, = [p for p in problems if p.startswith("data.text_column")]
    assert "'sentence'" in column and "columns: text, label" in column and "set data.text_column" in column


def test_schema_problems_name_their_keys_and_lines(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodel: m\nmax_length: 2\npruner: medain\nepochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    text = str(info.value)
    assert "data: required key is missing" in text
    assert "max_length (line 3)" in text
    assert "pruner.name (line 4)" in text
    assert "epochs (line 5): unknown key" in text
    assert len(info.value.problems) == 4


def test_misspelled_parameter_and_out_of_choice_override_are_reported(tmp_path):
    path = write_study(tmp_path, techniques={"finetune": {"learnin_rate": 1e-3, "batch_size": 7,
                                                          "epochs": {"low": 3, "high": 1}}})
    problems = _problems(path)
    assert any("finetune has no parameter or setting 'learnin_rate'" in p and "did you mean 'learning_rate'" in p for p in problems)
    assert any("finetune.batch_size: 7 is not a choice" in p for p in problems)
    assert any("finetune.epochs: low (3) is greater than high (1)" in p for p in problems)


def test_unknown_metric_and_missing_model_folder(tmp_path):
    path = write_study(tmp_path, metric="acuracy", model="./no-such-model")
    problems = _problems(path)
    assert any("did you mean 'accuracy'" in p for p in problems)
    assert any(p.startswith("model: folder not found") for p in problems)


def test_exponent_floats_are_numbers_not_strings(tmp_path):
    path = write_study(tmp_path)
    raw = path.read_text().replace("low: 0.0001", "low: 1e-4")
    assert "low: 1e-4" in raw
    path.write_text(raw)
    study = load_study(path)
    assert study.techniques["finetune"]["learning_rate"]["low"] == 1e-4


def test_cli_prints_one_error_and_exits_2(tmp_path, capsys):
    path = write_study(tmp_path, techniques={"finetune": {"epochs": "many"}}, metric="f2")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "Traceback" not in err


def test_disabled_technique_with_settings_is_an_error(tmp_path):
    path = write_study(tmp_path, disable=["finetune"])
    problems = _problems(path)
    assert problems == ["techniques.finetune: the technique is disabled; remove its section or enable it"]


def test_study_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_study(path)


def test_a_string_that_reads_as_a_number_is_quoted_so_the_file_reads_back_as_written():
    # Found while fuzzing frozen configs: a hash such as 74234e102 was written bare and read back as the float
    # 7.4234e+106 (autobert's YAML reads 1e-5 as a float), so a frozen config failed to load.
    from autobert.config.schema import dump_yaml, load_yaml

    data = {"fingerprint": "74234e102", "rate": 1e-5, "name": "1.5", "n": 3}
    assert load_yaml(dump_yaml(data)) == data
