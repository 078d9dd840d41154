"""Recipe configs: the shipped TOML files validate, and every mistake names the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from amr_dspy.errors import ConfigError
from optimize.recipes import (
    RECIPES_DIR,
    BootstrapRecipe,
    GepaRecipe,
    MiproRecipe,
    SimbaRecipe,
    load_recipe,
    parse_overrides,
    recipe_names,
)


def write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_recipes_load_with_their_optimizer_and_name() -> None:
    assert {"bootstrap", "mipro", "mipro-medium", "gepa", "simba"} <= set(recipe_names())
    expected = {"bootstrap": BootstrapRecipe, "mipro": MiproRecipe, "mipro-medium": MiproRecipe,
                "gepa": GepaRecipe, "simba": SimbaRecipe}  # fmt: skip
    for name, model in expected.items():
        recipe = load_recipe(name)
        assert isinstance(recipe, model) and recipe.name == name
    assert load_recipe("mipro").auto == "light" and load_recipe("mipro-medium").auto == "medium"
    # Every key of a shipped file is a real setting (no silently ignored typo in what users copy).
    assert load_recipe(RECIPES_DIR / "gepa.toml").reflection_adapter == "chat"


def test_a_copied_recipe_file_loads_with_its_own_name(tmp_path: Path) -> None:
    copy = write(tmp_path, (RECIPES_DIR / "bootstrap.toml").read_text().replace("num_candidate_programs = 6",
                                                                             "num_candidate_programs = 2"),
                 "fast-bootstrap.toml")  # fmt: skip
    recipe = load_recipe(str(copy))
    assert recipe.name == "fast-bootstrap" and recipe.num_candidate_programs == 2


def test_unknown_key_names_file_line_and_the_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, 'optimizer = "bootstrap"\nthreads = 2\nmax_demos = 4\n')
    with pytest.raises(ConfigError) as err:
        load_recipe(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}:3: key 'max_demos': unknown key for optimizer 'bootstrap'")
    assert "max_bootstrapped_demos" in message and "\n" not in message


def test_bad_values_name_the_key_its_line_and_the_value(tmp_path: Path) -> None:
    cases = {
        'optimizer = "mipro"\nauto = "extreme"\n': (2, "auto", "'extreme'"),
        'optimizer = "bootstrap"\n\nthreads = 0\n': (3, "threads", "0"),
        'optimizer = "simba"\nbsize = "many"\n': (2, "bsize", "'many'"),
        'optimizer = "bootstrap"\nmax_bootstrapped_demos = 0\n': (2, "max_bootstrapped_demos", "0"),
        'optimizer = "gepa"\nval_fraction = 1.5\n': (2, "val_fraction", "1.5"),
    }
    for text, (line, key, shown) in cases.items():
        path = write(tmp_path, text)
        with pytest.raises(ConfigError, match=rf"^{path}:{line}: key '{key}': .*\(got {shown}\)$"):
            load_recipe(str(path))


def test_missing_or_unknown_optimizer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optimizer is missing; expected one of bootstrap, mipro, gepa, simba"):
        load_recipe(str(write(tmp_path, "threads = 2\n")))
    path = write(tmp_path, 'threads = 2\noptimizer = "copro"\n')
    with pytest.raises(ConfigError, match=rf"^{path}:2: key 'optimizer': optimizer is 'copro'"):
        load_recipe(str(path))


def test_budget_rules_of_mipro_and_gepa(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='num_candidates/num_trials need auto = "off"'):
        load_recipe(str(write(tmp_path, 'optimizer = "mipro"\nnum_trials = 5\n')))
    with pytest.raises(ConfigError, match='auto = "off" needs both num_candidates and num_trials'):
        load_recipe(str(write(tmp_path, 'optimizer = "mipro"\nauto = "off"\nnum_trials = 5\n')))
    with pytest.raises(ConfigError, match='auto = "off" needs exactly one of max_full_evals, max_metric_calls'):
        load_recipe(str(write(tmp_path, 'optimizer = "gepa"\nauto = "off"\n')))
    with pytest.raises(ConfigError, match='max_metric_calls needs auto = "off"'):
        load_recipe(str(write(tmp_path, 'optimizer = "gepa"\nmax_metric_calls = 50\n')))
    ok = load_recipe(str(write(tmp_path, 'optimizer = "gepa"\nauto = "off"\nmax_metric_calls = 50\n')))
    assert isinstance(ok, GepaRecipe) and ok.max_metric_calls == 50


def test_invalid_toml_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, 'optimizer = "mipro\n')
    with pytest.raises(ConfigError, match=rf"^{path}: invalid TOML \(.*line 1"):
        load_recipe(str(path))
    unknown = r"--recipe nope: unknown recipe; known: bootstrap, bootstrap-2core, gepa, mipro"
    with pytest.raises(ConfigError, match=unknown):
        load_recipe("nope")
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(str(tmp_path / "absent.toml"))


def test_overrides_replace_keys_and_their_errors_name_the_option() -> None:
    assert parse_overrides(["auto=medium", "threads=2", "minibatch=false", "val_fraction = 0.5"]) == {
        "auto": "medium", "threads": 2, "minibatch": False, "val_fraction": 0.5}  # fmt: skip
    recipe = load_recipe("mipro", parse_overrides(["auto=medium", "threads=2"]))
    assert isinstance(recipe, MiproRecipe) and recipe.auto == "medium" and recipe.threads == 2
    with pytest.raises(ConfigError, match=r"^--set threads: .*\(got -1\)$"):
        load_recipe("mipro", parse_overrides(["threads=-1"]))
    with pytest.raises(ConfigError, match=r"^--set bogus: unknown key for optimizer 'mipro'"):
        load_recipe("mipro", {"bogus": 1})
    with pytest.raises(ConfigError, match=r"--set 'threads': expected KEY=VALUE"):
        parse_overrides(["threads"])
