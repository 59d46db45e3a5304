"""A YAML file plus `dotted.key=value` overrides, loaded with OmegaConf and resolved into one plain dict."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from recipe.config.schema import ConfigError


def load_config(yaml_path: str, overrides: list[str] | None = None) -> dict:
    """YAML + `dotted.key=value` overrides -> one resolved plain dict."""
    if not os.path.isfile(yaml_path):
        raise ConfigError(f"config file not found: {yaml_path}")
    try:
        cfg = OmegaConf.load(yaml_path)
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override '{item}' is not of the form dotted.key=value")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides or [])))
        return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError:
        raise
    except Exception as e:  # YAML syntax errors, bad interpolations
        raise ConfigError(f"{yaml_path}: {' '.join(str(e).split())}") from None
