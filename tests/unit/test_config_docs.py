"""docs/configuration.md is generated from the settings models and must match them."""

from pathlib import Path

from hub.config_docs import render
from hub.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_reference_is_up_to_date():
    assert DOC.read_text() == render(), "docs/configuration.md is stale: run `switchboard config-docs > docs/configuration.md`"


def test_every_setting_is_in_the_reference():
    text = render()

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                yield from keys(sub, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    missing = [k for k in keys(Settings) if f"`{k}" not in text]
    assert not missing, missing
    assert "`SWITCHBOARD_WEB__VIEWERS__<NAME>__TOKEN`" in text and "**secret**" in text
    assert "/work/" not in text and "/home/" not in text  # no machine-specific paths
